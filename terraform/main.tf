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

  # Event log (sns.tf): the topic, and consumer group => its queue, named as the
  # service names them (<topic>-<group>).
  log_topic_name  = coalesce(var.log_topic_name, "${var.name_prefix}-log")
  log_queue_names = { for g in var.log_consumer_groups : g => "${local.log_topic_name}-${g}" }
}

# One customer-managed key encrypts the queues, the event log topic and the archive bucket.
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
  # The key policy is aws_kms_key_policy.daybook below (a separate resource:
  # it names the event log's queues, which are themselves encrypted with this key).
}

# The default key policy (delegate to IAM in this account, so access is governed
# by the least-privilege policy in iam.tf), plus what IAM cannot grant: SNS
# delivering the event log into the group queues, which are encrypted with this
# key, needs kms:GenerateDataKey and kms:Decrypt as the SNS service principal.
# Without it deliveries fail with KMS.AccessDeniedException and the messages are
# lost silently.
data "aws_iam_policy_document" "kms_key" {
  statement {
    sid       = "EnableIAMUserPermissions"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid    = "EventLogDelivery"
    effect = "Allow"
    actions = [
      "kms:GenerateDataKey",
      "kms:Decrypt",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    # SQS encrypts under the queue's ARN as encryption context: only for the
    # event log's group queues.
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:sqs:arn"
      values   = [for q in aws_sqs_queue.log : q.arn]
    }
  }
}

resource "aws_kms_key_policy" "daybook" {
  key_id = aws_kms_key.daybook.id
  policy = data.aws_iam_policy_document.kms_key.json
}

resource "aws_kms_alias" "daybook" {
  name          = "alias/${var.name_prefix}-${var.environment}"
  target_key_id = aws_kms_key.daybook.key_id
}
