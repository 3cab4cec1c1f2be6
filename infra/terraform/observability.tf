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

# Logs Insights queries over the services' JSON lines (queries/README.md says what each answers).
# Every file is run through the local AWS's Logs Insights against a real run's logs and its
# answer compared with the run's own lines (tests/devstack/test_queries.py). The order
# journey's order_id is a placeholder to replace in the console.
resource "aws_cloudwatch_query_definition" "this" {
  for_each = fileset("${path.module}/queries", "*.logsinsights")

  name            = "${var.name}/${trimsuffix(each.value, ".logsinsights")}"
  log_group_names = [for group in aws_cloudwatch_log_group.service : group.name]
  query_string    = file("${path.module}/queries/${each.value}")
}

# --- alarms ----------------------------------------------------------------------------------

# Every alarm notifies this topic (and var.alarm_actions); subscribe an e-mail with alarm_email.
resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.this.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.alarm_email == null ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# Error-level lines (an unhandled error, publish_failed, state_unavailable, receiver_crashed...)
# and failed publishes, counted from the services' JSON log lines.
resource "aws_cloudwatch_log_metric_filter" "errors" {
  for_each       = aws_cloudwatch_log_group.service
  name           = "${var.name}-${each.key}-error-lines"
  log_group_name = each.value.name
  pattern        = "{ $.level = \"error\" || $.level = \"critical\" }"

  metric_transformation {
    name       = "error_log_lines"
    namespace  = local.emf_namespace
    value      = "1"
    unit       = "Count"
    dimensions = { service = "$.service" }
  }
}

resource "aws_cloudwatch_log_metric_filter" "publish_failures" {
  name           = "${var.name}-api-publish-failures"
  log_group_name = aws_cloudwatch_log_group.service["api"].name
  pattern        = "{ $.event = \"publish_failed\" }"

  metric_transformation {
    name       = "publish_failures"
    namespace  = local.emf_namespace
    value      = "1"
    unit       = "Count"
    dimensions = { service = "$.service" }
  }
}

locals {
  alarm_actions = concat([aws_sns_topic.alarms.arn], var.alarm_actions)
  # The sync endpoint answers after a payment: its time plus a margin, unless set.
  api_p99_alarm_seconds = coalesce(var.api_p99_alarm_seconds, var.payment_seconds + 2)
  alb_dimensions = {
    LoadBalancer = aws_lb.this.arn_suffix
    TargetGroup  = aws_lb_target_group.api.arn_suffix
  }

  # One metric each: the statistic over `periods` minutes against `threshold`.
  alarms = {
    dlq-not-empty = {
      description = "Orders the worker could not process reached the dead-letter queue."
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = aws_sqs_queue.dlq.name }
      statistic   = "Maximum"
      periods     = 1
      threshold   = 0
    }
    orders-waiting-too-long = {
      description = "The oldest order in the queue has waited longer than oldest_message_alarm_seconds: the workers do not keep up."
      namespace   = "AWS/SQS"
      metric      = "ApproximateAgeOfOldestMessage"
      dimensions  = { QueueName = aws_sqs_queue.orders.name }
      statistic   = "Maximum"
      periods     = 3
      threshold   = var.oldest_message_alarm_seconds
    }
    api-unhealthy-hosts = {
      description = "API tasks fail the ALB's /health check (ECS replaces them; a lasting alarm means new ones fail too)."
      namespace   = "AWS/ApplicationELB"
      metric      = "UnHealthyHostCount"
      dimensions  = local.alb_dimensions
      statistic   = "Maximum"
      periods     = 3
      threshold   = 0
    }
    # The whole fleet down: no target passes /health, so the ALB answers 503 itself and the
    # target 5xx rate (which counts only the tasks' answers) sees nothing.
    api-no-healthy-hosts = {
      description = "No API task passes the ALB's health check: every request gets a 503 from the ALB."
      namespace   = "AWS/ApplicationELB"
      metric      = "HealthyHostCount"
      dimensions  = local.alb_dimensions
      statistic   = "Minimum"
      periods     = 2
      threshold   = 1
      comparison  = "LessThanThreshold"
      # The ALB reports the count every minute; silence from it is not good news.
      missing = "breaching"
    }
    alb-5xx = {
      description = "The ALB itself answered 5xx (no healthy target, target timeouts, connection errors): an outage the tasks never saw."
      namespace   = "AWS/ApplicationELB"
      metric      = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      statistic   = "Sum"
      periods     = 2
      threshold   = var.alb_5xx_alarm_count
    }
    api-latency-p99 = {
      description = "The API's p99 response time at the ALB is above api_p99_alarm_seconds for 3 minutes."
      namespace   = "AWS/ApplicationELB"
      metric      = "TargetResponseTime"
      dimensions  = local.alb_dimensions
      extended    = "p99"
      periods     = 3
      threshold   = local.api_p99_alarm_seconds
    }
    api-publish-failures = {
      description = "The API could not publish orders to SNS (publish_failed lines): clients got 503s."
      namespace   = local.emf_namespace
      metric      = "publish_failures"
      dimensions  = { service = "api" }
      statistic   = "Sum"
      periods     = 1
      threshold   = 0
    }
    sns-delivery-failures = {
      description = "SNS failed to deliver orders to the queue (check the queue policy and the topic's KMS key)."
      namespace   = "AWS/SNS"
      metric      = "NumberOfNotificationsFailed"
      dimensions  = { TopicName = aws_sns_topic.orders.name }
      statistic   = "Sum"
      periods     = 1
      threshold   = 0
    }
    api-error-log-lines = {
      description = "The API wrote error-level log lines; Logs Insights errors-by-code shows which."
      namespace   = local.emf_namespace
      metric      = "error_log_lines"
      dimensions  = { service = "api" }
      statistic   = "Sum"
      periods     = 1
      threshold   = 0
    }
    worker-error-log-lines = {
      description = "The worker wrote error-level log lines; Logs Insights errors-by-code shows which."
      namespace   = local.emf_namespace
      metric      = "error_log_lines"
      dimensions  = { service = "worker" }
      statistic   = "Sum"
      periods     = 1
      threshold   = 0
    }
  }

  # Metric math: `expression` over two metrics `a` and `b`, for `periods` of the last `window`.
  ratio_alarms = merge(
    {
      api-5xx-rate = {
        description = "More than api_5xx_alarm_percent of the API's requests got a 5xx from the tasks."
        label       = "Target 5xx, % of requests"
        expression  = "100 * FILL(a, 0) / b"
        a           = { namespace = "AWS/ApplicationELB", metric = "HTTPCode_Target_5XX_Count", dimensions = local.alb_dimensions, stat = "Sum" }
        b           = { namespace = "AWS/ApplicationELB", metric = "RequestCount", dimensions = local.alb_dimensions, stat = "Sum" }
        periods     = 3
        window      = 5
        threshold   = var.api_5xx_alarm_percent
      }
    },
    {
      # Container Insights: tasks that should run but do not (crash loops, failed pulls,
      # failed health checks); a deployment or a scale-out may dip for a minute or two.
      for service in ["api", "worker"] : "${service}-tasks-below-desired" => {
        description = "Fewer ${service} tasks run than the service wants, for 5 minutes."
        label       = "Desired minus running tasks"
        expression  = "b - a"
        a           = { namespace = "ECS/ContainerInsights", metric = "RunningTaskCount", dimensions = { ClusterName = aws_ecs_cluster.this.name, ServiceName = "${var.name}-${service}" }, stat = "Average" }
        b           = { namespace = "ECS/ContainerInsights", metric = "DesiredTaskCount", dimensions = { ClusterName = aws_ecs_cluster.this.name, ServiceName = "${var.name}-${service}" }, stat = "Average" }
        periods     = 5
        window      = 5
        threshold   = 0
      }
    },
  )
}

resource "aws_cloudwatch_metric_alarm" "metric" {
  for_each = local.alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = lookup(each.value, "statistic", null)
  extended_statistic  = lookup(each.value, "extended", null)
  period              = 60
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = lookup(each.value, "comparison", "GreaterThanThreshold")
  treat_missing_data  = lookup(each.value, "missing", "notBreaching")
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "ratio" {
  for_each = local.ratio_alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  evaluation_periods  = each.value.window
  datapoints_to_alarm = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "ratio"
    label       = each.value.label
    expression  = each.value.expression
    return_data = true
  }

  dynamic "metric_query" {
    for_each = { a = each.value.a, b = each.value.b }
    content {
      id = metric_query.key
      metric {
        namespace   = metric_query.value.namespace
        metric_name = metric_query.value.metric
        dimensions  = metric_query.value.dimensions
        stat        = metric_query.value.stat
        period      = 60
      }
    }
  }
}

locals {
  # The services' own metrics, from EMF log lines (services/common/metrics.py).
  emf_namespace = "Orderflow"
  # The API's request metric has the dimensions service, route (the route template) and mode
  # (metrics.HTTP_DIMENSIONS); these are the two order routes and their modes (ROUTE_MODES).
  api_order_routes = { "/orders/async" = "async", "/orders/sync" = "sync" }

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
      title = "API requests per minute, by route"
      metrics = [
        for route, mode in local.api_order_routes :
        [local.emf_namespace, "duration_ms", "service", "api", "route", route, "mode", mode, { stat = "SampleCount", label = "${mode} (${route})", period = 60 }]
      ]
    },
    {
      # Sync waits for the payment (seconds), async only queues it (milliseconds): one line each.
      title = "API latency p50/p99 by route (ms)"
      metrics = flatten([
        for route, mode in local.api_order_routes : [
          [local.emf_namespace, "duration_ms", "service", "api", "route", route, "mode", mode, { stat = "p50", label = "${mode} p50" }],
          [local.emf_namespace, "duration_ms", "service", "api", "route", route, "mode", mode, { stat = "p99", label = "${mode} p99" }],
        ]
      ])
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
