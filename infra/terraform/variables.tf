variable "name" {
  description = "Prefix of every resource name, and the Project tag."
  type        = string
  default     = "orderflow"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "aws_region" {
  description = "Region to deploy into."
  type        = string
  default     = "us-west-2"
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; two public and two private /20 subnets are carved from it."
  type        = string
  default     = "10.0.0.0/16"
}

variable "image_tag" {
  description = "Tag of both images in ECR: the git SHA infra/deploy.sh pushed them with. No default: the repositories are IMMUTABLE, so a moving tag such as latest could never be pushed twice."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a Docker tag (e.g. the git SHA), and not latest: the repositories' tags are immutable."
  }
}

variable "certificate_arn" {
  description = "ACM certificate ARN. When set, the ALB also listens on 443 and port 80 redirects to HTTPS."
  type        = string
  default     = null
}

variable "domain_name" {
  description = "A DNS name for the API (the name certificate_arn covers); the URL deploy.sh prints uses it. null: the ALB's own DNS name."
  type        = string
  default     = null

  validation {
    condition     = var.domain_name == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be a lowercase DNS name such as orders.example.com, or null."
  }
}

variable "route53_zone_id" {
  description = "A Route 53 hosted zone holding domain_name: an alias record to the ALB is created in it. null: point domain_name at the ALB yourself."
  type        = string
  default     = null

  validation {
    condition     = var.route53_zone_id == null || var.domain_name != null
    error_message = "route53_zone_id needs domain_name: the record to create in the zone."
  }
}

variable "alb_ingress_cidrs" {
  description = "CIDRs allowed to reach the ALB."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "existing_role_arn" {
  description = "A pre-existing IAM role used as execution role and both task roles (accounts where roles cannot be created, e.g. AWS Academy's LabRole). null creates least-privilege roles."
  type        = string
  default     = null
}

variable "api_min_count" {
  description = "Fewest API tasks behind the ALB (the count at creation; autoscaling owns it afterwards)."
  type        = number
  default     = 2

  validation {
    condition     = var.api_min_count >= 1
    error_message = "api_min_count must be at least 1."
  }
}

variable "api_max_count" {
  description = "Most API tasks autoscaling may run."
  type        = number
  default     = 10

  validation {
    condition     = var.api_max_count >= var.api_min_count
    error_message = "api_max_count must be at least api_min_count."
  }
}

variable "api_requests_per_target" {
  description = "Autoscaling target of ALBRequestCountPerTarget: requests per API task per minute."
  type        = number
  default     = 3000

  validation {
    condition     = var.api_requests_per_target >= 1
    error_message = "api_requests_per_target must be at least 1."
  }
}

variable "api_cpu_target_percent" {
  description = "Autoscaling target of the API service's average CPU (%); whichever policy asks for more tasks wins."
  type        = number
  default     = 60

  validation {
    condition     = var.api_cpu_target_percent > 0 && var.api_cpu_target_percent <= 100
    error_message = "api_cpu_target_percent must be in (0, 100]."
  }
}

variable "api_cpu" {
  description = "API task CPU units (1024 = 1 vCPU)."
  type        = number
  default     = 256
}

variable "api_memory" {
  description = "API task memory (MiB)."
  type        = number
  default     = 512
}

variable "worker_cpu" {
  description = "Worker task CPU units (1024 = 1 vCPU)."
  type        = number
  default     = 256
}

variable "worker_memory" {
  description = "Worker task memory (MiB)."
  type        = number
  default     = 512
}

variable "worker_min_count" {
  description = "Fewest worker tasks autoscaling keeps running (at least 1: backlog per task divides by it)."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_min_count >= 1
    error_message = "worker_min_count must be at least 1."
  }
}

variable "worker_max_count" {
  description = "Most worker tasks autoscaling may run."
  type        = number
  default     = 10

  validation {
    condition     = var.worker_max_count >= var.worker_min_count
    error_message = "worker_max_count must be at least worker_min_count."
  }
}

variable "num_workers" {
  description = "NUM_WORKERS: concurrent payment slots (asyncio tasks) per worker task."
  type        = number
  default     = 100

  validation {
    condition     = var.num_workers >= 1 && var.num_workers <= 10000
    error_message = "num_workers must be between 1 and 10000."
  }
}

variable "payment_seconds" {
  description = "PAYMENT_SECONDS: the simulated payment time; the queue's visibility timeout derives from it."
  type        = number
  default     = 3

  validation {
    condition     = var.payment_seconds > 0 && var.payment_seconds <= 600
    error_message = "payment_seconds must be in (0, 600]."
  }
}

variable "payment_timeout_seconds" {
  description = "PAYMENT_TIMEOUT_SECONDS of both services: a payment still running after this counts as failed and is retried. It must exceed payment_seconds, or every payment would time out."
  type        = number
  default     = 10

  validation {
    condition     = var.payment_timeout_seconds > var.payment_seconds && var.payment_timeout_seconds <= 900
    error_message = "payment_timeout_seconds must be above payment_seconds (or every payment times out) and at most 900."
  }
}

variable "receive_strategy" {
  description = "RECEIVE_STRATEGY of the worker: batched or per-task."
  type        = string
  default     = "batched"

  validation {
    condition     = contains(["batched", "per-task"], var.receive_strategy)
    error_message = "receive_strategy must be batched or per-task."
  }
}

variable "worker_shutdown_grace_seconds" {
  description = "SHUTDOWN_GRACE_SECONDS: time in-flight payments get after SIGTERM; the task's stopTimeout is 10 s longer."
  type        = number
  default     = 25

  validation {
    condition     = var.worker_shutdown_grace_seconds >= 0 && var.worker_shutdown_grace_seconds <= 110
    error_message = "worker_shutdown_grace_seconds must be between 0 and 110 (Fargate's stopTimeout is at most 120)."
  }
}

variable "acceptable_delay_seconds" {
  description = "How long an order may wait in the queue; sets the autoscaling target of backlog per task."
  type        = number
  default     = 30

  # The target is floor(acceptable_delay_seconds / payment_seconds * num_workers): below 1 it
  # would floor to 0, and a target of 0 scales out for ever.
  validation {
    condition     = var.acceptable_delay_seconds > 0 && var.acceptable_delay_seconds <= 3600 && floor(var.acceptable_delay_seconds / var.payment_seconds * var.num_workers) >= 1
    error_message = "acceptable_delay_seconds must be in (0, 3600] and long enough for one task to pay one order (acceptable_delay_seconds / payment_seconds * num_workers >= 1)."
  }
}

variable "log_retention_days" {
  description = "Retention of the services' log groups."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "alarm_email" {
  description = "An e-mail address subscribed to the alarm topic (AWS sends a confirmation first); null subscribes none."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an e-mail address, or null."
  }
}

variable "alarm_actions" {
  description = "More ARNs notified when an alarm fires, besides the module's own alarm topic (e.g. an existing on-call topic)."
  type        = list(string)
  default     = []
}

variable "api_5xx_alarm_percent" {
  description = "Alarm when more than this share (%) of the ALB's requests get a 5xx from the API, for 3 minutes out of 5."
  type        = number
  default     = 1

  validation {
    condition     = var.api_5xx_alarm_percent > 0 && var.api_5xx_alarm_percent <= 100
    error_message = "api_5xx_alarm_percent must be in (0, 100]."
  }
}

variable "alb_5xx_alarm_count" {
  description = "Alarm when the ALB itself answers more than this many 5xx a minute, 2 minutes running (HTTPCode_ELB_5XX_Count: no healthy target, timeouts)."
  type        = number
  default     = 0

  validation {
    condition     = var.alb_5xx_alarm_count >= 0
    error_message = "alb_5xx_alarm_count must be 0 or more."
  }
}

variable "api_p99_alarm_seconds" {
  description = "Alarm when the API's p99 TargetResponseTime is above this, 3 minutes running; null: payment_seconds + 2 (a sync order waits for its payment)."
  type        = number
  default     = null

  validation {
    condition     = var.api_p99_alarm_seconds == null || try(var.api_p99_alarm_seconds > 0, false)
    error_message = "api_p99_alarm_seconds must be above 0, or null."
  }
}

variable "interface_endpoints" {
  description = "Interface VPC endpoints for SQS, SNS, CloudWatch Logs and ECR (api, dkr), so task traffic to them skips the NAT gateway. Off by default: each costs about $0.01 per hour per AZ (about $0.10/h for these five in two AZs, twice the NAT gateway's $0.045/h) plus $0.01/GB, against the NAT's $0.045/GB: they pay off only above about 3 GB per hour."
  type        = bool
  default     = false
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest order in the queue has waited this long."
  type        = number
  default     = 300
}

variable "deletion_protection" {
  description = "Deletion protection on the ALB and the order table: a destroy (or a replacement) fails until it is turned off. On in prod."
  type        = bool
  default     = false
}

variable "alb_access_logs" {
  description = "ALB access logs to an S3 bucket this module creates (SSE-S3, the only encryption ELB log delivery supports; kept log_retention_days). On in prod."
  type        = bool
  default     = false
}

variable "ecr_force_delete" {
  description = "Whether destroy deletes the ECR repositories with their images. true suits a test deployment rebuilt from git; false (prod) keeps every image an old tag could roll back to."
  type        = bool
  default     = true
}
