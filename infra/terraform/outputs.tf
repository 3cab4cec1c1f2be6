output "alb_url" {
  description = "Where the order API answers (point the bench here)."
  value       = "http://${aws_lb.this.dns_name}"
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
