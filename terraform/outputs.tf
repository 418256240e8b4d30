output "queue_name" {
  description = "Main events queue name (the service's fixed name is daybook-events)."
  value       = aws_sqs_queue.events.name
}

output "queue_url" {
  description = "Main events queue URL."
  value       = aws_sqs_queue.events.url
}

output "queue_arn" {
  description = "Main events queue ARN."
  value       = aws_sqs_queue.events.arn
}

output "dlq_name" {
  description = "Dead-letter queue name."
  value       = aws_sqs_queue.events_dlq.name
}

output "dlq_url" {
  description = "Dead-letter queue URL."
  value       = aws_sqs_queue.events_dlq.url
}

output "dlq_arn" {
  description = "Dead-letter queue ARN."
  value       = aws_sqs_queue.events_dlq.arn
}

output "log_topic_name" {
  description = "Event log SNS topic name (DAYBOOK_SNS_LOG_TOPIC)."
  value       = aws_sns_topic.log.name
}

output "log_topic_arn" {
  description = "Event log SNS topic ARN (DAYBOOK_SNS_LOG_TOPIC_ARN)."
  value       = aws_sns_topic.log.arn
}

output "log_queue_urls" {
  description = "Event log queue URL of each consumer group."
  value       = { for g, q in aws_sqs_queue.log : g => q.url }
}

output "log_dlq_urls" {
  description = "Event log dead-letter queue URL of each consumer group."
  value       = { for g, q in aws_sqs_queue.log_dlq : g => q.url }
}

output "archive_bucket" {
  description = "Archive bucket name."
  value       = aws_s3_bucket.archive.bucket
}

output "archive_url" {
  description = "Value for DAYBOOK_ARCHIVE_URL."
  value       = "s3://${aws_s3_bucket.archive.bucket}/${var.archive_prefix}"
}

output "access_log_bucket" {
  description = "Bucket receiving the archive bucket's server access logs."
  value       = aws_s3_bucket.logs.bucket
}

output "kms_key_arn" {
  description = "Customer-managed KMS key encrypting the queues and the archive."
  value       = aws_kms_key.daybook.arn
}

output "service_policy_arn" {
  description = "IAM policy to attach to whatever identity runs the service."
  value       = aws_iam_policy.service.arn
}

output "service_role_arn" {
  description = "Service role ARN, or null when assume_role_principals is unset."
  value       = try(aws_iam_role.service[0].arn, null)
}

output "region" {
  description = "Value for AWS_REGION."
  value       = var.region
}

output "service_env" {
  description = "Environment for the service (the queue names are fixed in the service; DAYBOOK_QUEUE selects SQS). With the topic ARN set the service need not list the account's topics."
  value = {
    DAYBOOK_QUEUE             = "sqs"
    AWS_REGION                = var.region
    DAYBOOK_ARCHIVE_URL       = "s3://${aws_s3_bucket.archive.bucket}/${var.archive_prefix}"
    DAYBOOK_SNS_LOG_TOPIC     = aws_sns_topic.log.name
    DAYBOOK_SNS_LOG_TOPIC_ARN = aws_sns_topic.log.arn
  }
}

output "bootstrap_key_secret_arn" {
  description = "Secrets Manager secret to fill once and inject as DAYBOOK_BOOTSTRAP_KEY (its value is never in Terraform)."
  value       = aws_secretsmanager_secret.bootstrap_key.arn
}
