resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs are alb_access_logs (on in prod.tfvars); dev keeps the API's own http_request lines in CloudWatch only.
  #checkov:skip=CKV_AWS_150:Deletion protection is deletion_protection (on in prod.tfvars); dev is meant to be destroyed after a run.
  #checkov:skip=CKV2_AWS_20:Port 80 redirects to HTTPS when certificate_arn is set; without a certificate there is nothing to redirect to.
  #checkov:skip=CKV2_AWS_28:No WAF: the API validates every body and answers 4xx; add a web ACL for production.
  name                       = "${var.name}-alb"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = local.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  dynamic "access_logs" {
    for_each = var.alb_access_logs ? [1] : []
    content {
      bucket  = aws_s3_bucket.alb_logs[0].id
      prefix  = local.alb_logs_prefix
      enabled = true
    }
  }

  # ELB writes a test object when logging is turned on: the bucket policy must be there first.
  depends_on = [aws_s3_bucket_policy.alb_logs]
}

# --- ALB access logs (alb_access_logs) -----------------------------------------------------------

locals {
  alb_logs_prefix = "alb"
}

# ELB's log delivery supports SSE-S3 only (not SSE-KMS), so the bucket's default encryption is
# AES256; versioned, private, owner-enforced, objects expired after log_retention_days.
resource "aws_s3_bucket" "alb_logs" {
  #checkov:skip=CKV_AWS_18:This bucket is itself a log destination; logging its reads to another bucket is left to the account's CloudTrail data events.
  #checkov:skip=CKV_AWS_144:Access logs are kept log_retention_days in one region; cross-region replication would double the cost for no recovery need.
  #checkov:skip=CKV_AWS_145:ELB access log delivery supports only SSE-S3 (AES256), not SSE-KMS; the bucket is encrypted with SSE-S3.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to a new log object; Athena or a download reads them when needed.
  count         = var.alb_access_logs ? 1 : 0
  bucket_prefix = "${var.name}-alb-logs-"
  # With deletion protection on (prod) a destroy stops at a non-empty bucket, as it should.
  force_destroy = !var.deletion_protection
}

resource "aws_s3_bucket_public_access_block" "alb_logs" {
  count                   = var.alb_access_logs ? 1 : 0
  bucket                  = aws_s3_bucket.alb_logs[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "alb_logs" {
  count  = var.alb_access_logs ? 1 : 0
  bucket = aws_s3_bucket.alb_logs[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "alb_logs" {
  count  = var.alb_access_logs ? 1 : 0
  bucket = aws_s3_bucket.alb_logs[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "alb_logs" {
  count  = var.alb_access_logs ? 1 : 0
  bucket = aws_s3_bucket.alb_logs[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "alb_logs" {
  count  = var.alb_access_logs ? 1 : 0
  bucket = aws_s3_bucket.alb_logs[0].id

  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = var.log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.alb_logs]
}

# Regions opened before August 2022 deliver as the regional ELB account; newer regions as the
# logdelivery.elasticloadbalancing.amazonaws.com service principal. Both are granted, for this
# account's prefix only; anything not over TLS is refused.
data "aws_elb_service_account" "this" {
  count = var.alb_access_logs ? 1 : 0
}

resource "aws_s3_bucket_policy" "alb_logs" {
  count  = var.alb_access_logs ? 1 : 0
  bucket = aws_s3_bucket.alb_logs[0].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "ElbAccountWritesAccessLogs"
        Effect    = "Allow"
        Principal = { AWS = data.aws_elb_service_account.this[0].arn }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.alb_logs[0].arn}/${local.alb_logs_prefix}/AWSLogs/${local.account_id}/*"
      },
      {
        Sid       = "ElbLogDeliveryWritesAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "logdelivery.elasticloadbalancing.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.alb_logs[0].arn}/${local.alb_logs_prefix}/AWSLogs/${local.account_id}/*"
      },
      {
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.alb_logs[0].arn, "${aws_s3_bucket.alb_logs[0].arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.alb_logs]
}

resource "aws_lb_target_group" "api" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; behind it, traffic to the tasks stays inside the VPC's private subnets.
  name        = "${var.name}-api"
  port        = 8080
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = aws_vpc.this.id
  # When ECS stops a task it deregisters the target first and sends SIGTERM only once this
  # delay is over: the ALB sends no new requests meanwhile and those in flight (a sync order
  # takes about payment_seconds) finish here. SHUTDOWN_TIMEOUT_SECONDS then covers stragglers.
  deregistration_delay = 15

  health_check {
    path                = "/health"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Plain HTTP until a certificate_arn is given; then this listener only redirects to 443.
  #checkov:skip=CKV_AWS_103:See CKV_AWS_2: TLS applies on the 443 listener.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  dynamic "default_action" {
    for_each = var.certificate_arn == null ? [] : [1]
    content {
      type = "redirect"
      redirect {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }

  dynamic "default_action" {
    for_each = var.certificate_arn == null ? [1] : []
    content {
      type             = "forward"
      target_group_arn = aws_lb_target_group.api.arn
    }
  }
}

resource "aws_lb_listener" "https" {
  count             = var.certificate_arn == null ? 0 : 1
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}

# --- the API's DNS name (domain_name, route53_zone_id) -------------------------------------------

locals {
  # Where clients reach the API (output alb_url): https once a certificate is configured (port
  # 80 then only redirects), at domain_name when one is set, else at the ALB's own name.
  api_scheme = var.certificate_arn == null ? "http" : "https"
  api_host   = var.domain_name != null ? var.domain_name : aws_lb.this.dns_name
}

resource "aws_route53_record" "api" {
  count   = var.route53_zone_id == null ? 0 : 1
  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}

# A certificate names a domain, never the ALB's generated DNS name: without domain_name, the
# https URL deploy.sh prints fails TLS verification (a warning at plan, not an error).
check "certificate_has_a_domain" {
  assert {
    condition     = var.certificate_arn == null || var.domain_name != null
    error_message = "certificate_arn is set without domain_name: https://<the ALB's DNS name> will not match the certificate; set domain_name (and point it at the ALB, or give route53_zone_id)."
  }
}
