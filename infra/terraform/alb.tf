resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs need an S3 bucket; the API writes one http_request line per request to CloudWatch instead.
  #checkov:skip=CKV_AWS_150:A load-test deployment is meant to be destroyed after the run.
  #checkov:skip=CKV2_AWS_20:Port 80 redirects to HTTPS when certificate_arn is set; without a certificate there is nothing to redirect to.
  #checkov:skip=CKV2_AWS_28:No WAF: the API validates every body and answers 4xx; add a web ACL for production.
  name                       = "${var.name}-alb"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = local.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
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
