terraform {
  # strcontains() in variables.tf needs 1.5; CI and these machines run 1.11.
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Pinned to the version in the offline mirror (/opt/tf-plugins) so that
      # `terraform init -plugin-dir=/opt/tf-plugins` resolves without network.
      # Bump together with the mirror.
      version = "5.100.0"
    }
  }

  # No backend block on purpose: each deployment supplies its own
  # (`terraform init -backend-config=...`), see README.md.
}

provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}
