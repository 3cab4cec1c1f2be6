# dev: small and cheap; `make deploy` (ENV=dev by default) applies this file. Every variable is
# documented in ../variables.tf; image_tag comes from infra/deploy.sh (the git SHA).
aws_region = "us-west-2"
name       = "orderflow-dev"

# Worker sizing: NUM_WORKERS concurrent payments per task, autoscaled on backlog per task.
num_workers                   = 100
payment_seconds               = 3
payment_timeout_seconds       = 10
receive_strategy              = "batched"
worker_shutdown_grace_seconds = 25
worker_min_count              = 1
worker_max_count              = 4
acceptable_delay_seconds      = 30

# API: autoscaled on requests per task and CPU between these bounds.
api_min_count = 1
api_max_count = 3

log_retention_days = 7

# Accounts where IAM roles cannot be created (AWS Academy): use the provided role everywhere.
# existing_role_arn = "arn:aws:iam::123456789012:role/LabRole"

# Alarms go to the module's SNS topic; subscribe an address (AWS e-mails a confirmation first).
# alarm_email = "oncall@example.com"
