output "alb_url" {
  description = "Where the order API answers (point the bench here): https when a certificate is configured (port 80 then only redirects), at domain_name when one is set."
  value       = "${local.api_scheme}://${local.api_host}"
}

output "services" {
  description = "Each ECS service's name and the task definition it should run: infra/deploy.sh waits until both run theirs."
  value = {
    api    = { name = aws_ecs_service.api.name, task_definition = aws_ecs_task_definition.this["api"].arn }
    worker = { name = aws_ecs_service.worker.name, task_definition = aws_ecs_task_definition.this["worker"].arn }
  }
}

output "topic_arn" {
  description = "ORDER_TOPIC_ARN: the SNS topic the API publishes orders to."
  value       = aws_sns_topic.orders.arn
}

output "queue_url" {
  description = "ORDER_QUEUE_URL: the SQS queue the worker drains."
  value       = aws_sqs_queue.orders.url
}

output "dlq_url" {
  description = "The dead-letter queue: orders that failed maxReceiveCount (5) times."
  value       = aws_sqs_queue.dlq.url
}

output "orders_table" {
  description = "ORDERS_TABLE: the DynamoDB table of order state and idempotency keys."
  value       = aws_dynamodb_table.orders.name
}

output "ecr_repository_urls" {
  description = "Where to push the images: order-api and order-processor."
  value       = { for k, repo in aws_ecr_repository.this : k => repo.repository_url }
}

output "cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "dashboard_url" {
  description = "The CloudWatch dashboard."
  value       = "https://console.aws.amazon.com/cloudwatch/home?region=${var.aws_region}#dashboards:name=${aws_cloudwatch_dashboard.this.dashboard_name}"
}
