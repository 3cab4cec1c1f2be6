resource "aws_cloudwatch_log_group" "service" {
  #checkov:skip=CKV_AWS_338:A load-test deployment keeps logs log_retention_days (30 by default); raise it for production.
  for_each = toset(["api", "worker"])

  name              = "/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_cloudwatch_log_group" "flow" {
  #checkov:skip=CKV_AWS_338:Rejected-traffic flow logs are for debugging security groups; 30 days suffice.
  name              = "/${var.name}/vpc-flow"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

# Logs Insights queries over the services' JSON lines; the files are checked against real log
# lines in tests/infra. The order journey's order_id is a placeholder to replace in the console.
resource "aws_cloudwatch_query_definition" "this" {
  for_each = fileset("${path.module}/queries", "*.logsinsights")

  name            = "${var.name}/${trimsuffix(each.value, ".logsinsights")}"
  log_group_names = [for group in aws_cloudwatch_log_group.service : group.name]
  query_string    = file("${path.module}/queries/${each.value}")
}

locals {
  alarms = {
    dlq-not-empty = {
      description = "Orders the worker could not process reached the dead-letter queue."
      metric      = "ApproximateNumberOfMessagesVisible"
      queue       = aws_sqs_queue.dlq.name
      periods     = 1
      threshold   = 0
    }
    orders-waiting-too-long = {
      description = "The oldest order in the queue has waited longer than oldest_message_alarm_seconds: the workers do not keep up."
      metric      = "ApproximateAgeOfOldestMessage"
      queue       = aws_sqs_queue.orders.name
      periods     = 3
      threshold   = var.oldest_message_alarm_seconds
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "queue" {
  for_each = local.alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/SQS"
  metric_name         = each.value.metric
  dimensions          = { QueueName = each.value.queue }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

locals {
  # The services' own metrics, from EMF log lines (services/common/metrics.py).
  emf_namespace = "Orderflow"

  dashboard_widgets = [
    {
      title = "Queue: visible messages and age of oldest (s)"
      metrics = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.orders.name, { stat = "Maximum" }],
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", aws_sqs_queue.orders.name, { stat = "Maximum", yAxis = "right" }],
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.dlq.name, { stat = "Maximum", label = "DLQ" }],
      ]
    },
    {
      title = "Orders paid per minute, payment and queue time p99 (ms)"
      metrics = [
        [local.emf_namespace, "payment_ms", "service", "worker", { stat = "SampleCount", label = "paid", period = 60 }],
        [local.emf_namespace, "payment_ms", "service", "worker", { stat = "p99", yAxis = "right" }],
        [local.emf_namespace, "queue_ms", "service", "worker", { stat = "p99", yAxis = "right" }],
      ]
    },
    {
      title = "API requests per minute and latency p50/p99 (ms)"
      metrics = [
        [local.emf_namespace, "duration_ms", "service", "api", { stat = "SampleCount", label = "requests", period = 60 }],
        [local.emf_namespace, "duration_ms", "service", "api", { stat = "p50", yAxis = "right" }],
        [local.emf_namespace, "duration_ms", "service", "api", { stat = "p99", yAxis = "right" }],
      ]
    },
    {
      title = "Running tasks"
      metrics = [
        ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", aws_ecs_cluster.this.name, "ServiceName", aws_ecs_service.worker.name],
        ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", aws_ecs_cluster.this.name, "ServiceName", aws_ecs_service.api.name],
      ]
    },
    {
      title = "ALB: requests and 5xx"
      metrics = [
        ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", aws_lb.this.arn_suffix, { stat = "Sum" }],
        ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", aws_lb.this.arn_suffix, { stat = "Sum" }],
        ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", aws_lb.this.arn_suffix, { stat = "Sum" }],
      ]
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name

  dashboard_body = jsonencode({
    widgets = [for i, w in local.dashboard_widgets : {
      type   = "metric"
      x      = (i % 2) * 12
      y      = floor(i / 2) * 6
      width  = 12
      height = 6
      properties = {
        title   = w.title
        region  = var.aws_region
        view    = "timeSeries"
        stacked = false
        period  = 60
        metrics = w.metrics
      }
    }]
  })
}
