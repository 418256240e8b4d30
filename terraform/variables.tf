variable "name_prefix" {
  description = "Prefix of every resource name. The default \"daybook\" yields the queue names the service expects (daybook-events, daybook-events-dlq)."
  type        = string
  default     = "daybook"

  validation {
    # Bucket names derive from it and are capped at 63 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-22 characters of lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "environment" {
  description = "Deployment environment; used in the bucket name and the Environment tag."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, staging, prod."
  }
}

variable "region" {
  description = "AWS region to deploy into; the service's AWS_REGION must match."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. eu-west-1."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource (merged under Service/Environment/ManagedBy)."
  type        = map(string)
  default     = {}
}

variable "queue_retention_days" {
  description = "How long an unconsumed message stays on the main queue (SQS allows 1-14 days)."
  type        = number
  default     = 4

  validation {
    condition     = var.queue_retention_days >= 1 && var.queue_retention_days <= 14 && floor(var.queue_retention_days) == var.queue_retention_days
    error_message = "queue_retention_days must be a whole number from 1 to 14."
  }
}

variable "dlq_retention_days" {
  description = "How long a dead-lettered message stays on the DLQ. Standard queues keep the original enqueue time on redrive, so this must exceed queue_retention_days."
  type        = number
  default     = 14

  validation {
    condition     = var.dlq_retention_days >= 1 && var.dlq_retention_days <= 14 && floor(var.dlq_retention_days) == var.dlq_retention_days
    error_message = "dlq_retention_days must be a whole number from 1 to 14."
  }
}

variable "visibility_timeout_seconds" {
  description = "How long a received message stays hidden from other consumers. Must exceed the worker's worst-case handling of one message (see sqs.tf)."
  type        = number
  default     = 60

  validation {
    # Worst case with the service defaults is 40 s (see sqs.tf); SQS caps it at 12 h.
    condition     = var.visibility_timeout_seconds > 40 && var.visibility_timeout_seconds <= 43200
    error_message = "visibility_timeout_seconds must be above 40 (the worker's worst-case handling time) and at most 43200."
  }
}

variable "max_receive_count" {
  description = "Receives before SQS moves a message to the DLQ (the service contract says 5)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "log_topic_name" {
  description = "Name of the event log's SNS topic (the service's DAYBOOK_SNS_LOG_TOPIC). Null (default) names it <name_prefix>-log, i.e. daybook-log, the service's default."
  type        = string
  default     = null
  nullable    = true

  validation {
    # SNS allows up to 256; the group queues' names (<topic>-<group>-dlq) must also fit SQS's 80.
    condition     = var.log_topic_name == null || can(regex("^[A-Za-z0-9_-]{1,60}$", var.log_topic_name))
    error_message = "log_topic_name must be null or 1-60 letters, digits, hyphens and underscores."
  }
}

variable "log_consumer_groups" {
  description = "Consumer groups of the event log. Each gets an SQS queue <log topic>-<group> subscribed to the topic (raw delivery) and its DLQ <log topic>-<group>-dlq; the service reads daybook-projections."
  type        = list(string)
  default     = ["daybook-projections"]

  validation {
    condition     = length(var.log_consumer_groups) > 0 && alltrue([for g in var.log_consumer_groups : can(regex("^[A-Za-z0-9_-]{1,60}$", g))]) && length(distinct(var.log_consumer_groups)) == length(var.log_consumer_groups)
    error_message = "log_consumer_groups must be at least one, distinct names of 1-60 letters, digits, hyphens and underscores."
  }
}

variable "archive_prefix" {
  description = "Key prefix under which the service archives payloads (the path part of DAYBOOK_ARCHIVE_URL). The IAM policy grants access to this prefix only."
  type        = string
  default     = "events"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.archive_prefix)) && !strcontains(var.archive_prefix, "*")
    error_message = "archive_prefix must be a non-empty S3 key prefix without leading or trailing slash and without '*'."
  }
}

variable "archive_transition_days" {
  description = "Days after which archived payloads move to STANDARD_IA (archives are written once and rarely read)."
  type        = number
  default     = 30

  validation {
    # S3 refuses STANDARD_IA transitions earlier than 30 days.
    condition     = var.archive_transition_days >= 30
    error_message = "archive_transition_days must be at least 30 (S3 minimum for STANDARD_IA)."
  }
}

variable "archive_glacier_days" {
  description = "Days after which archived payloads move to GLACIER_IR; null keeps them in STANDARD_IA."
  type        = number
  default     = 180
  nullable    = true

  validation {
    condition     = var.archive_glacier_days == null || try(var.archive_glacier_days >= var.archive_transition_days + 30, false)
    error_message = "archive_glacier_days must be null or at least 30 days after archive_transition_days."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which superseded (noncurrent) object versions are deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "access_log_retention_days" {
  description = "Days S3 server access logs of the archive bucket are kept."
  type        = number
  default     = 90

  validation {
    condition     = var.access_log_retention_days >= 1
    error_message = "access_log_retention_days must be at least 1."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the customer-managed KMS key is deleted after destroy (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "assume_role_principals" {
  description = "Who may assume the service role. Empty (default) creates no role: attach the policy (output service_policy_arn) to a role of your own. Example: { type = \"Service\", identifiers = [\"ecs-tasks.amazonaws.com\"] }."
  type = object({
    type        = string
    identifiers = list(string)
  })
  default = null

  validation {
    condition     = var.assume_role_principals == null || try(contains(["Service", "AWS", "Federated"], var.assume_role_principals.type) && length(var.assume_role_principals.identifiers) > 0, false)
    error_message = "assume_role_principals.type must be Service, AWS or Federated, with at least one identifier."
  }
}
