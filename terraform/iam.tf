# Least-privilege policy for the Daybook service (API + worker + relay).
data "aws_iam_policy_document" "service" {
  statement {
    sid    = "EventsQueues"
    effect = "Allow"
    actions = [
      "sqs:SendMessage",             # ingest, replay, stuck-event rescue
      "sqs:ReceiveMessage",          # worker; the DLQ mover
      "sqs:DeleteMessage",           # ack; the DLQ mover once recorded
      "sqs:ChangeMessageVisibility", # extend while handling, hand back at shutdown
      "sqs:GetQueueAttributes",      # daybook_queue_depth, daybook_dlq_depth, /ready
      "sqs:GetQueueUrl",             # watermill-aws resolves the queue by name
    ]
    resources = [
      aws_sqs_queue.events.arn,
      aws_sqs_queue.events_dlq.arn,
    ]
  }

  statement {
    sid       = "EventLogTopic"
    effect    = "Allow"
    actions   = ["sns:Publish"] # the relay; replays of the event log's dead letters
    resources = [aws_sns_topic.log.arn]
  }

  statement {
    sid    = "EventLogQueues"
    effect = "Allow"
    # Consumer groups read their queue; the DLQ mover reads their DLQs. Nothing
    # sends to them but the topic (sns.tf).
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = concat(
      [for q in aws_sqs_queue.log : q.arn],
      [for q in aws_sqs_queue.log_dlq : q.arn],
    )
  }

  statement {
    sid    = "ArchiveObjects"
    effect = "Allow"
    actions = [
      "s3:PutObject",
      "s3:GetObject",
    ]
    # Object-level wildcard under the service's own prefix only.
    resources = ["${aws_s3_bucket.archive.arn}/${var.archive_prefix}/*"]
  }

  statement {
    sid    = "ArchiveBucketCheck"
    effect = "Allow"
    # HeadBucket at start (a wrong bucket fails then, not at the first event)
    # needs ListBucket; the prefix condition keeps listing to the service's own keys.
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.archive.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["", "${var.archive_prefix}/*"]
    }
  }

  statement {
    sid    = "BootstrapKey"
    effect = "Allow"
    # Read at start to inject DAYBOOK_BOOTSTRAP_KEY; never written by the service.
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.bootstrap_key.arn]
  }

  statement {
    sid    = "EncryptionKey"
    effect = "Allow"
    actions = [
      "kms:GenerateDataKey", # SendMessage, Publish, PutObject
      "kms:Decrypt",         # ReceiveMessage, Publish, GetObject
    ]
    resources = [aws_kms_key.daybook.arn]
    # Only when SQS, SNS, S3 or Secrets Manager uses the key on the service's behalf.
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "sqs.${var.region}.amazonaws.com",
        "sns.${var.region}.amazonaws.com",
        "s3.${var.region}.amazonaws.com",
        "secretsmanager.${var.region}.amazonaws.com",
      ]
    }
  }
}

resource "aws_iam_policy" "service" {
  name        = "${var.name_prefix}-${var.environment}-service"
  description = "Daybook service: events queues, event log topic and queues, archive prefix, bootstrap API key, encryption key"
  policy      = data.aws_iam_policy_document.service.json
}

# Optional role for the service, created when assume_role_principals is set.
data "aws_iam_policy_document" "assume" {
  count = var.assume_role_principals == null ? 0 : 1

  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = var.assume_role_principals.type
      identifiers = var.assume_role_principals.identifiers
    }
  }
}

resource "aws_iam_role" "service" {
  count = var.assume_role_principals == null ? 0 : 1

  name               = "${var.name_prefix}-${var.environment}-service"
  assume_role_policy = data.aws_iam_policy_document.assume[0].json
}

resource "aws_iam_role_policy_attachment" "service" {
  count = var.assume_role_principals == null ? 0 : 1

  role       = aws_iam_role.service[0].name
  policy_arn = aws_iam_policy.service.arn
}
