# ---------------------------------------------------------------------------
# Event log: an SNS topic, and per consumer group an SQS queue subscribed to it
# (raw delivery) with a DLQ of its own. The names are the service's:
# <topic>-<group> and <topic>-<group>-dlq (transport/sqs). Another group is one
# more entry in var.log_consumer_groups.
# ---------------------------------------------------------------------------

resource "aws_sns_topic" "log" {
  name = local.log_topic_name
  # Same key as the queues. Publishers need kms:GenerateDataKey and kms:Decrypt
  # on it (iam.tf); SNS's own use of it to deliver into the group queues is
  # granted in the key policy (main.tf).
  kms_master_key_id = aws_kms_key.daybook.arn
}

# Same settings as daybook-events-dlq; the worker's mover receives here and
# deletes once recorded in dead_letters.
resource "aws_sqs_queue" "log_dlq" {
  for_each = local.log_queue_names

  name                       = "${each.value}-dlq"
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.dlq_retention_days * 86400
  max_message_size           = 262144
  receive_wait_time_seconds  = 20

  kms_master_key_id                 = aws_kms_key.daybook.arn
  kms_data_key_reuse_period_seconds = 300

  lifecycle {
    precondition {
      condition     = length("${each.value}-dlq") <= 80
      error_message = "SQS queue names are at most 80 characters: shorten log_topic_name or the consumer group name."
    }
  }
}

# Same settings and redrive as daybook-events (see sqs.tf for the visibility
# timeout and the two dead-letter paths).
resource "aws_sqs_queue" "log" {
  for_each = local.log_queue_names

  name                       = each.value
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.queue_retention_days * 86400
  max_message_size           = 262144 # 256 KiB, SNS's message limit too
  receive_wait_time_seconds  = 20

  kms_master_key_id                 = aws_kms_key.daybook.arn
  kms_data_key_reuse_period_seconds = 300

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.log_dlq[each.key].arn
    maxReceiveCount     = var.max_receive_count
  })
}

# Only the group's queue may use its DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "log_dlq" {
  for_each = local.log_queue_names

  queue_url = aws_sqs_queue.log_dlq[each.key].id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.log[each.key].arn]
  })
}

# The topic, and only the topic, may send to a group's queue.
data "aws_iam_policy_document" "log_queue" {
  for_each = local.log_queue_names

  statement {
    sid       = "EventLogTopic"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.log[each.key].arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.log.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "log" {
  for_each = local.log_queue_names

  queue_url = aws_sqs_queue.log[each.key].id
  policy    = data.aws_iam_policy_document.log_queue[each.key].json
}

# Raw delivery: the queue receives the published body and message attributes
# as they are (the SNS envelope would hide the attributes the service reads).
resource "aws_sns_topic_subscription" "log" {
  for_each = local.log_queue_names

  topic_arn            = aws_sns_topic.log.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.log[each.key].arn
  raw_message_delivery = true

  # Deliveries fail until the queue policy and the key policy let SNS in.
  depends_on = [aws_sqs_queue_policy.log, aws_kms_key_policy.daybook]
}
