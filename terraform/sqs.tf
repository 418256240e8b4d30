# Visibility timeout: the queue's default for a received message. The worker
# asks for its own per receive (DAYBOOK_SQS_VISIBILITY_TIMEOUT, 30 s) and
# extends it every third of that while it handles the message, so retries
# with backoff (worst case 5 x 5 s + 1 + 2 + 4 + 8 s = 40 s) or a pause while
# Postgres is down never let a second consumer receive it, nor count towards
# maxReceiveCount. This default only matters for other consumers (e.g. an
# operator's aws sqs receive-message); it stays above the worst case anyway.
#
# Two dead-letter paths: a message that keeps failing is retried in place
# and recorded in the dead_letters table (the application's poison queue),
# then deleted; it never reaches the SQS DLQ. The redrive below catches what
# the application never acknowledged: maxReceiveCount deliveries whose worker
# died. The worker moves those into dead_letters as well, so both are listed
# by GET /admin/dlq and `daybook dlq list` and replayed the same way.
resource "aws_sqs_queue" "events" {
  name                       = local.queue_name
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.queue_retention_days * 86400
  max_message_size           = 262144 # 256 KiB, the ingest body limit
  receive_wait_time_seconds  = 20     # long polling: fewer empty receives

  kms_master_key_id                 = aws_kms_key.daybook.arn
  kms_data_key_reuse_period_seconds = 300

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.events_dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue" "events_dlq" {
  name = local.dlq_name
  # The worker's mover receives here and deletes once recorded in dead_letters.
  visibility_timeout_seconds = var.visibility_timeout_seconds
  # Standard queues keep the original enqueue time when a message is
  # dead-lettered, so the DLQ keeps messages for longer than the main queue.
  message_retention_seconds = var.dlq_retention_days * 86400
  max_message_size          = 262144
  receive_wait_time_seconds = 20

  kms_master_key_id                 = aws_kms_key.daybook.arn
  kms_data_key_reuse_period_seconds = 300

  lifecycle {
    precondition {
      condition     = var.dlq_retention_days > var.queue_retention_days
      error_message = "dlq_retention_days must exceed queue_retention_days, or dead-lettered messages may expire as they arrive."
    }
  }
}

# Only the events queue may use this DLQ. A separate resource because the
# queues reference each other (redrive policy -> DLQ ARN, allow policy ->
# source ARN), which inline attributes would make a cycle.
resource "aws_sqs_queue_redrive_allow_policy" "events_dlq" {
  queue_url = aws_sqs_queue.events_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events.arn]
  })
}
