# Visibility timeout: a received message must stay invisible for longer than
# the worker can spend on it, or a second consumer receives it while the first
# is still retrying it. With the service defaults the worst case is
#   DAYBOOK_MAX_ATTEMPTS (5) x DAYBOOK_ATTEMPT_TIMEOUT (5 s)
#   + backoffs 1 + 2 + 4 + 8 s                      = 40 s
# (config.Worker.WorstCaseHandling). 60 s matches DAYBOOK_CLAIM_IDLE, the same
# bound on the Redis Streams side. Raise both together if the worker's
# timeouts grow; the variable refuses anything at or below 40 s.
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
  # Replay (`daybook dlq replay`) reads and deletes here; same bound as above.
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
