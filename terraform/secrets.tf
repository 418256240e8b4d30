# The service's first API key (DAYBOOK_BOOTSTRAP_KEY). Terraform creates the
# secret but never its value: a value in Terraform would sit in the state file
# in plain text. Put one in once, out of band:
#   aws secretsmanager put-secret-value --secret-id <bootstrap_key_secret_arn> \
#     --secret-string "$(openssl rand -hex 32)"
# and have the orchestrator inject it as DAYBOOK_BOOTSTRAP_KEY (for ECS, a
# container `secrets` entry with valueFrom = this ARN). Daybook stores only
# its SHA-256 at start; make further keys with `daybook keys create`.
resource "aws_secretsmanager_secret" "bootstrap_key" {
  name                    = "${var.name_prefix}/${var.environment}/bootstrap-api-key"
  description             = "Daybook's first API key (DAYBOOK_BOOTSTRAP_KEY); the value is put in out of band"
  kms_key_id              = aws_kms_key.daybook.arn
  recovery_window_in_days = 7
}
