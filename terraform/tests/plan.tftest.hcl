# Offline plan checks (no AWS credentials): `terraform test` with a mocked
# provider. Run by scripts/lint-terraform.sh.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{}"
    }
  }
}

variables {
  environment = "prod"
}

run "defaults_match_service_contract" {
  command = plan

  assert {
    condition     = aws_sqs_queue.events.name == "daybook-events"
    error_message = "main queue must be daybook-events"
  }
  assert {
    condition     = aws_sqs_queue.events_dlq.name == "daybook-events-dlq"
    error_message = "DLQ must be daybook-events-dlq"
  }
  assert {
    condition     = aws_sqs_queue.events.visibility_timeout_seconds == 60
    error_message = "visibility timeout default must be 60 s"
  }
  assert {
    condition     = aws_s3_bucket.archive.bucket == "daybook-archive-prod-123456789012"
    error_message = "unexpected archive bucket name"
  }
  assert {
    condition     = output.service_env.DAYBOOK_ARCHIVE_URL == "s3://daybook-archive-prod-123456789012/events"
    error_message = "unexpected DAYBOOK_ARCHIVE_URL"
  }
  assert {
    condition     = length(aws_iam_role.service) == 0
    error_message = "no role unless assume_role_principals is set"
  }
  assert {
    condition     = aws_secretsmanager_secret.bootstrap_key.name == "daybook/prod/bootstrap-api-key"
    error_message = "unexpected bootstrap key secret name"
  }
  assert {
    condition     = aws_sns_topic.log.name == "daybook-log"
    error_message = "log topic must be daybook-log"
  }
  assert {
    condition     = keys(aws_sqs_queue.log) == ["daybook-projections"]
    error_message = "one log group by default: daybook-projections"
  }
  assert {
    condition     = aws_sqs_queue.log["daybook-projections"].name == "daybook-log-daybook-projections"
    error_message = "log group queue must be <topic>-<group>"
  }
  assert {
    condition     = aws_sqs_queue.log_dlq["daybook-projections"].name == "daybook-log-daybook-projections-dlq"
    error_message = "log group DLQ must be <topic>-<group>-dlq"
  }
  assert {
    condition     = aws_sqs_queue.log["daybook-projections"].visibility_timeout_seconds == aws_sqs_queue.events.visibility_timeout_seconds
    error_message = "log group queue must have the work queue's visibility timeout"
  }
  assert {
    condition     = aws_sqs_queue.log_dlq["daybook-projections"].message_retention_seconds == aws_sqs_queue.events_dlq.message_retention_seconds
    error_message = "log group DLQ must keep messages as long as the work queue's DLQ"
  }
  assert {
    condition     = aws_sns_topic_subscription.log["daybook-projections"].protocol == "sqs" && aws_sns_topic_subscription.log["daybook-projections"].raw_message_delivery
    error_message = "log group queue must be subscribed with raw delivery"
  }
  assert {
    condition     = output.service_env.DAYBOOK_SNS_LOG_TOPIC == "daybook-log"
    error_message = "service_env must name the log topic"
  }
}

run "log_group_redrives_to_its_dlq" {
  command = plan

  # The DLQ's ARN is known only after apply; give it one at plan.
  override_resource {
    target          = aws_sqs_queue.log_dlq
    override_during = plan
    values = {
      arn = "arn:aws:sqs:eu-west-1:123456789012:daybook-log-daybook-projections-dlq"
    }
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.log["daybook-projections"].redrive_policy).maxReceiveCount == 5
    error_message = "log group queue must redrive after 5 receives"
  }
  assert {
    condition     = jsondecode(aws_sqs_queue.log["daybook-projections"].redrive_policy).deadLetterTargetArn == "arn:aws:sqs:eu-west-1:123456789012:daybook-log-daybook-projections-dlq"
    error_message = "log group queue must redrive to its own DLQ"
  }
}

run "another_log_group_is_one_entry" {
  command = plan

  variables {
    log_consumer_groups = ["daybook-projections", "audit"]
  }

  assert {
    condition     = aws_sqs_queue.log["audit"].name == "daybook-log-audit" && aws_sqs_queue.log_dlq["audit"].name == "daybook-log-audit-dlq"
    error_message = "second group's queue and DLQ expected"
  }
  assert {
    condition     = length(aws_sns_topic_subscription.log) == 2 && length(aws_sqs_queue_policy.log) == 2
    error_message = "each group needs a subscription and a queue policy"
  }
}

run "rejects_bad_log_group" {
  command = plan

  variables {
    log_consumer_groups = ["daybook.projections"]
  }

  expect_failures = [var.log_consumer_groups]
}

run "role_when_principals_given" {
  command = plan

  variables {
    assume_role_principals = {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }

  assert {
    condition     = length(aws_iam_role.service) == 1
    error_message = "role expected"
  }
}

run "rejects_short_visibility_timeout" {
  command = plan

  variables {
    visibility_timeout_seconds = 30
  }

  expect_failures = [var.visibility_timeout_seconds]
}

run "rejects_bad_environment" {
  command = plan

  variables {
    environment = "production"
  }

  expect_failures = [var.environment]
}

run "rejects_dlq_retention_not_above_queue" {
  command = plan

  variables {
    queue_retention_days = 14
    dlq_retention_days   = 14
  }

  expect_failures = [aws_sqs_queue.events_dlq]
}

run "rejects_log_queue_name_over_sqs_limit" {
  command = plan

  variables {
    log_topic_name      = "daybook-event-log-of-a-rather-long-name"
    log_consumer_groups = ["projections-with-a-name-long-enough-to-overflow"]
  }

  expect_failures = [aws_sqs_queue.log_dlq]
}
