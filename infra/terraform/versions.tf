terraform {
  # 1.9: validations that read other variables; 1.10: the S3 backend's use_lockfile.
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 6.0"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      Project   = var.name
      ManagedBy = "terraform"
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first two zones are used (locals.azs); a zone AWS adds later never joins.
  state = "available"
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  azs        = slice(data.aws_availability_zones.available.names, 0, 2)

  # A payment must finish well inside the visibility timeout, or a second worker would see
  # the message and pay it again: five payment times, and never under 30 s.
  visibility_timeout = max(30, ceil(var.payment_seconds * 5))

  # ECS waits stopTimeout after SIGTERM before SIGKILL: the worker's grace period plus time
  # to hand back what is still held and close its client (Fargate allows at most 120 s).
  worker_stop_timeout = min(120, ceil(var.worker_shutdown_grace_seconds) + 10)

  # Backlog per task the worker service may carry: what one task clears in the acceptable delay.
  backlog_target = floor(var.acceptable_delay_seconds / var.payment_seconds * var.num_workers)

  create_roles = var.existing_role_arn == null

  api_image    = "${aws_ecr_repository.this["order-api"].repository_url}:${var.image_tag}"
  worker_image = "${aws_ecr_repository.this["order-processor"].repository_url}:${var.image_tag}"
}
