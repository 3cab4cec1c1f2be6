# Least privilege: one execution role (pull images, write logs), one task role per service and
# one role for VPC flow logs. With var.existing_role_arn set, none is created and that role is
# used everywhere.

locals {
  roles = {
    ecs-execution = { principal = "ecs-tasks.amazonaws.com", policy = data.aws_iam_policy_document.execution.json }
    api-task      = { principal = "ecs-tasks.amazonaws.com", policy = data.aws_iam_policy_document.api_task.json }
    worker-task   = { principal = "ecs-tasks.amazonaws.com", policy = data.aws_iam_policy_document.worker_task.json }
    vpc-flow-logs = { principal = "vpc-flow-logs.amazonaws.com", policy = data.aws_iam_policy_document.flow_logs.json }
  }
  role_arns = { for key in keys(local.roles) : key => local.create_roles ? aws_iam_role.this[key].arn : var.existing_role_arn }
}

data "aws_iam_policy_document" "assume" {
  for_each = toset([for role in local.roles : role.principal])

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [each.value]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "this" {
  for_each           = local.create_roles ? local.roles : {}
  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume[each.value.principal].json
}

resource "aws_iam_role_policy" "this" {
  for_each = aws_iam_role.this
  name     = each.key
  role     = each.value.id
  policy   = local.roles[each.key].policy
}

data "aws_iam_policy_document" "execution" {
  #checkov:skip=CKV_AWS_356:ecr:GetAuthorizationToken has no resource-level permissions; its statement is the only one on "*".
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "PullOwnImages"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [for repo in aws_ecr_repository.this : repo.arn]
  }
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for group in aws_cloudwatch_log_group.service : "${group.arn}:*"]
  }
}

data "aws_iam_policy_document" "api_task" {
  statement {
    # GetTopicAttributes: the API checks its topic at start (and warms its client with it).
    sid       = "PublishOrders"
    actions   = ["sns:Publish", "sns:GetTopicAttributes"]
    resources = [aws_sns_topic.orders.arn]
  }
  statement {
    # Publishing to a KMS-encrypted topic needs a data key from the topic's key; kms:Decrypt
    # also covers the order table, which DynamoDB only reads or writes for a caller allowed
    # to decrypt with the table's key (the same key).
    sid       = "EncryptForTopic"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
  statement {
    # PublishBatch is authorized by sns:Publish; conditional writes share TransactWriteItems
    # calls, authorized as the Put/Update/DeleteItems inside them.
    # DeleteItem: a pending order whose publish failed is forgotten (services/domain/transitions.py);
    # DescribeTable: the start-up check of the table.
    sid = "OrderState"
    actions = [
      "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
      "dynamodb:DescribeTable",
    ]
    resources = [aws_dynamodb_table.orders.arn]
  }
}

data "aws_iam_policy_document" "worker_task" {
  statement {
    # DeleteMessageBatch and ChangeMessageVisibilityBatch are authorized by these same actions;
    # GetQueueAttributes reads the visibility timeout and maxReceiveCount at start.
    sid       = "DrainOrders"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.orders.arn]
  }
  statement {
    # The worker moves declined, out-of-retries and undecodable messages to the DLQ itself,
    # with the reason as message attributes; it finds the DLQ's URL from the redrive policy.
    sid       = "DeadLetter"
    actions   = ["sqs:GetQueueUrl", "sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
  statement {
    # Claims, lease renewals, paid- and failed-marks share TransactWriteItems calls (group
    # commit), authorized as the UpdateItems inside them.
    sid       = "OrderState"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.orders.arn]
  }
  statement {
    # The table is encrypted with the project's customer-managed key: DynamoDB serves an item
    # read or write only to a caller that may decrypt with that key, else AccessDeniedException.
    sid       = "DecryptOrderTable"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow.arn}:*"]
  }
}
