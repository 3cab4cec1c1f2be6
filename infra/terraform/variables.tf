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
  description = "Tag of both images in ECR (tags are immutable: push a new tag, e.g. the git SHA, per release)."
  type        = string
  default     = "latest"
}

variable "certificate_arn" {
  description = "ACM certificate ARN. When set, the ALB also listens on 443 and port 80 redirects to HTTPS."
  type        = string
  default     = null
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

variable "api_desired_count" {
  description = "API tasks behind the ALB."
  type        = number
  default     = 2
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
}

variable "log_retention_days" {
  description = "Retention of the services' log groups."
  type        = number
  default     = 30
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires (e.g. an SNS topic with an e-mail subscription)."
  type        = list(string)
  default     = []
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest order in the queue has waited this long."
  type        = number
  default     = 300
}
