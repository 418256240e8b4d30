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
