resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

locals {
  # What both services read: where AWS resources are and how to log.
  common_env = {
    AWS_REGION   = var.aws_region
    ORDERS_TABLE = aws_dynamodb_table.orders.name
    LOG_LEVEL    = "info"
    # Both services charge (the API on /orders/sync): one timeout, validated above payment_seconds.
    PAYMENT_SECONDS         = tostring(var.payment_seconds)
    PAYMENT_TIMEOUT_SECONDS = tostring(var.payment_timeout_seconds)
  }

  # Where the worker's heartbeat lives: the root filesystem is read-only, so a task volume is
  # mounted here (Dockerfile.worker declares it a VOLUME owned by the app user).
  heartbeat_dir = "/var/lib/orderflow"

  services = {
    api = {
      image     = local.api_image
      cpu       = var.api_cpu
      memory    = var.api_memory
      task_role = local.role_arns["api-task"]
      ports     = [{ containerPort = 8080, protocol = "tcp" }]
      volumes   = []
      # ECS ignores the image's HEALTHCHECK: this is the check it acts on (the same command).
      # The ALB's own check replaces unhealthy targets too; this one also covers start-up.
      health_check = {
        command     = ["CMD", "python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health', timeout=2)"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 15
      }
      # ECS stops with SIGTERM: aiohttp finishes in-flight requests within SHUTDOWN_TIMEOUT.
      stop_timeout = 30
      environment = merge(local.common_env, {
        ORDER_TOPIC_ARN          = aws_sns_topic.orders.arn
        PORT                     = "8080"
        SHUTDOWN_TIMEOUT_SECONDS = "10"
      })
    }
    worker = {
      image     = local.worker_image
      cpu       = var.worker_cpu
      memory    = var.worker_memory
      task_role = local.role_arns["worker-task"]
      ports     = []
      volumes   = [{ sourceVolume = "heartbeat", containerPath = local.heartbeat_dir, readOnly = false }]
      # No port to probe: the event loop touches HEARTBEAT_FILE every HEARTBEAT_INTERVAL_SECONDS
      # and the check fails once it is older than HEARTBEAT_MAX_AGE_SECONDS; ECS then replaces
      # the task (services/worker/liveness.py).
      health_check = {
        command     = ["CMD", "python", "-m", "services.worker.healthcheck"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
      stop_timeout = local.worker_stop_timeout
      environment = merge(local.common_env, {
        HEARTBEAT_FILE            = "${local.heartbeat_dir}/heartbeat"
        HEARTBEAT_MAX_AGE_SECONDS = "30"
        ORDER_QUEUE_URL           = aws_sqs_queue.orders.url
        NUM_WORKERS               = tostring(var.num_workers)
        RECEIVE_STRATEGY          = var.receive_strategy
        SHUTDOWN_GRACE_SECONDS    = tostring(var.worker_shutdown_grace_seconds)
      })
    }
  }
}

resource "aws_ecs_task_definition" "this" {
  for_each = local.services

  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = local.role_arns["ecs-execution"]
  task_role_arn            = each.value.task_role

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # A bind mount on the task's ephemeral storage, for what must be writable.
  dynamic "volume" {
    for_each = toset([for mount in each.value.volumes : mount.sourceVolume])
    content {
      name = volume.value
    }
  }

  container_definitions = jsonencode([{
    name                   = each.key
    image                  = each.value.image
    essential              = true
    readonlyRootFilesystem = true
    stopTimeout            = each.value.stop_timeout
    portMappings           = each.value.ports
    mountPoints            = each.value.volumes
    healthCheck            = each.value.health_check
    environment            = [for k in sort(keys(each.value.environment)) : { name = k, value = each.value.environment[k] }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = each.key
      }
    }
  }])
}

resource "aws_ecs_service" "api" {
  name             = "${var.name}-api"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.this["api"].arn
  desired_count    = var.api_min_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.api.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "api"
    container_port   = 8080
  }

  # New tasks get this long before failed ALB checks count against them.
  health_check_grace_period_seconds = 30

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # Autoscaling owns the count once the service exists.
  lifecycle {
    ignore_changes = [desired_count]
  }

  # The target group must be attached to the ALB by whichever listener serves it: HTTP alone,
  # or HTTPS (port 80 then only redirects).
  depends_on = [aws_lb_listener.http, aws_lb_listener.https]
}

resource "aws_ecs_service" "worker" {
  name             = "${var.name}-worker"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.this["worker"].arn
  desired_count    = var.worker_min_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.worker.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # Autoscaling owns the count once the service exists.
  lifecycle {
    ignore_changes = [desired_count]
  }
}

# --- API autoscaling: requests per task and CPU ------------------------------------------------

resource "aws_appautoscaling_target" "api" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.api.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.api_min_count
  max_capacity       = var.api_max_count
}

# Two target-tracking policies: ECS scales out when either asks and in only when both allow.
resource "aws_appautoscaling_policy" "api" {
  for_each = {
    requests = { metric = "ALBRequestCountPerTarget", target = var.api_requests_per_target }
    cpu      = { metric = "ECSServiceAverageCPUUtilization", target = var.api_cpu_target_percent }
  }

  name               = "${var.name}-api-${each.key}"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  resource_id        = aws_appautoscaling_target.api.resource_id
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = each.value.target
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = each.value.metric
      # Only the request count is per target group; the label names the ALB and the group.
      resource_label = each.key == "requests" ? "${aws_lb.this.arn_suffix}/${aws_lb_target_group.api.arn_suffix}" : null
    }
  }
}

# --- worker autoscaling on backlog per task -----------------------------------------------------------

resource "aws_appautoscaling_target" "worker" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.worker.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.worker_min_count
  max_capacity       = var.worker_max_count
}

# Visible messages ÷ running tasks, tracked toward what one task clears in the acceptable delay
# (acceptable_delay_seconds ÷ payment_seconds × num_workers); see locals.backlog_target.
resource "aws_appautoscaling_policy" "worker_backlog" {
  name               = "${var.name}-worker-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  resource_id        = aws_appautoscaling_target.worker.resource_id
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = local.backlog_target
    scale_out_cooldown = 30
    scale_in_cooldown  = 120

    customized_metric_specification {
      metrics {
        id          = "visible"
        return_data = false
        metric_stat {
          stat = "Sum"
          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"
            dimensions {
              name  = "QueueName"
              value = aws_sqs_queue.orders.name
            }
          }
        }
      }
      metrics {
        id          = "tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.worker.name
            }
          }
        }
      }
      metrics {
        id          = "backlog_per_task"
        label       = "Visible messages per running worker task"
        expression  = "visible / tasks"
        return_data = true
      }
    }
  }
}
