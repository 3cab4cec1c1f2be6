# prod: HTTPS, two API tasks at least, room to scale, longer logs; `ENV=prod make deploy`.
# Every variable is documented in ../variables.tf; image_tag comes from infra/deploy.sh.
aws_region = "us-west-2"
name       = "orderflow-prod"

# HTTPS: an ACM certificate in the same region for domain_name; port 80 then redirects to 443.
# With route53_zone_id the module creates domain_name's alias record to the ALB; without it,
# point the name at the ALB yourself. deploy.sh prints https://<domain_name>.
certificate_arn = "arn:aws:acm:us-west-2:123456789012:certificate/00000000-0000-0000-0000-000000000000"
domain_name     = "orders.example.com"
# route53_zone_id = "Z0123456789ABCDEFGHIJ"

# What a destroy must not take by accident: the ALB and the order table refuse deletion until
# deletion_protection is turned off; ECR keeps its images (every tag a rollback may need).
deletion_protection = true
ecr_force_delete    = false

# ALB access logs to an SSE-S3-encrypted bucket made here, kept log_retention_days.
alb_access_logs = true

num_workers                   = 100
payment_seconds               = 3
payment_timeout_seconds       = 10
receive_strategy              = "batched"
worker_shutdown_grace_seconds = 25
worker_min_count              = 2
worker_max_count              = 20
acceptable_delay_seconds      = 30

# Two tasks at least: one per AZ, so an AZ outage leaves the API answering.
api_min_count           = 2
api_max_count           = 10
api_requests_per_target = 3000
api_cpu_target_percent  = 60

log_retention_days           = 90
oldest_message_alarm_seconds = 120
api_5xx_alarm_percent        = 1
alarm_email                  = "oncall@example.com"

# Task traffic to SQS, SNS, Logs and ECR skips the NAT gateway; worth it above ~3 GB/h.
interface_endpoints = true
