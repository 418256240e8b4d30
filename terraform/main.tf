data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  tags = merge(var.tags, {
    Service     = var.name_prefix
    Environment = var.environment
    ManagedBy   = "terraform"
  })

  queue_name     = "${var.name_prefix}-events"
  dlq_name       = "${var.name_prefix}-events-dlq"
  archive_bucket = "${var.name_prefix}-archive-${var.environment}-${local.account_id}"
  log_bucket     = "${var.name_prefix}-archive-logs-${var.environment}-${local.account_id}"
}

# One customer-managed key encrypts both queues and the archive bucket.
#
# Why a CMK rather than SQS-managed SSE / SSE-S3: the key policy and the IAM
# policy (iam.tf) decide who can read messages and archived payloads, key use
# is visible in CloudTrail, and rotation is under our control. The extra cost
# (one key + KMS requests) is kept small by the S3 bucket key and the SQS data
# key reuse period below.
resource "aws_kms_key" "daybook" {
  description             = "${var.name_prefix} (${var.environment}): SQS events queues and S3 archive"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  # No explicit key policy: the default one delegates to IAM in this account,
  # so access is governed by the least-privilege policy in iam.tf.
}

resource "aws_kms_alias" "daybook" {
  name          = "alias/${var.name_prefix}-${var.environment}"
  target_key_id = aws_kms_key.daybook.key_id
}
