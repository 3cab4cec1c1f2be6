resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# Strip the default security group of its rules, so nothing can use it by accident.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
}

locals {
  # Public subnets hold the ALB and the NAT gateway; private ones the tasks. The number is where
  # the tier's /20s start in the VPC's range.
  tiers = { public = 0, private = 8 }
  subnets = {
    for pair in setproduct(keys(local.tiers), range(length(local.azs))) :
    "${pair[0]}-${pair[1]}" => { tier = pair[0], az = local.azs[pair[1]], index = pair[1] }
  }
  public_subnet_ids  = [for key, subnet in aws_subnet.this : subnet.id if local.subnets[key].tier == "public"]
  private_subnet_ids = [for key, subnet in aws_subnet.this : subnet.id if local.subnets[key].tier == "private"]
}

resource "aws_subnet" "this" {
  for_each          = local.subnets
  vpc_id            = aws_vpc.this.id
  availability_zone = each.value.az
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, local.tiers[each.value.tier] + each.value.index)

  tags = { Name = "${var.name}-${each.value.tier}-${each.value.az}" }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = { Name = var.name }
}

# One NAT gateway, not one per AZ: it halves the fixed hourly cost of a lab deployment; an AZ
# outage would cut the private subnets of the other AZ off from SQS, SNS and ECR.
resource "aws_eip" "nat" {
  domain = "vpc"

  tags = { Name = "${var.name}-nat" }
}

resource "aws_nat_gateway" "this" {
  allocation_id = aws_eip.nat.id
  subnet_id     = aws_subnet.this["public-0"].id

  tags       = { Name = var.name }
  depends_on = [aws_internet_gateway.this]
}

# Public subnets route out through the internet gateway, private ones through the NAT gateway.
resource "aws_route_table" "this" {
  for_each = local.tiers
  vpc_id   = aws_vpc.this.id

  tags = { Name = "${var.name}-${each.key}" }
}

resource "aws_route" "default" {
  for_each               = local.tiers
  route_table_id         = aws_route_table.this[each.key].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = each.key == "public" ? aws_internet_gateway.this.id : null
  nat_gateway_id         = each.key == "private" ? aws_nat_gateway.this.id : null
}

resource "aws_route_table_association" "this" {
  for_each       = local.subnets
  subnet_id      = aws_subnet.this[each.key].id
  route_table_id = aws_route_table.this[each.value.tier].id
}

# Rejected traffic only: enough to debug a security group, at a fraction of the cost of ALL.
resource "aws_flow_log" "this" {
  vpc_id               = aws_vpc.this.id
  traffic_type         = "REJECT"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow.arn
  iam_role_arn         = local.role_arns["vpc-flow-logs"]
}

# --- security groups -------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "The public load balancer in front of the order API"
  vpc_id      = aws_vpc.this.id
}

resource "aws_security_group" "api" {
  name        = "${var.name}-api"
  description = "Order API tasks: traffic from the ALB only"
  vpc_id      = aws_vpc.this.id
}

resource "aws_security_group" "worker" {
  name        = "${var.name}-worker"
  description = "Order processor tasks: no inbound traffic"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:The ALB is the public entry point; port 80 redirects to 443 once certificate_arn is set.
  for_each          = toset(var.alb_ingress_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from clients"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = var.certificate_arn == null ? toset([]) : toset(var.alb_ingress_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from clients"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Forward to the API tasks"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.api.id
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  security_group_id            = aws_security_group.api.id
  description                  = "Requests and health checks from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.alb.id
}

# Tasks reach SNS, SQS, ECR's API and CloudWatch over HTTPS through the NAT gateway (or the
# interface endpoints, when enabled), DynamoDB and S3 (ECR's image layers) through the gateway
# endpoints: all on 443.
resource "aws_vpc_security_group_egress_rule" "https_out" {
  for_each          = { api = aws_security_group.api.id, worker = aws_security_group.worker.id }
  security_group_id = each.value
  description       = "HTTPS to AWS APIs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# --- VPC endpoints ---------------------------------------------------------------------------

# Gateway endpoints are free: DynamoDB calls and ECR's image layers (stored in S3) leave the NAT
# gateway and its per-GB charge. They add routes to the private subnets' route table.
resource "aws_vpc_endpoint" "gateway" {
  for_each          = toset(["dynamodb", "s3"])
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${var.aws_region}.${each.key}"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.this["private"].id]

  tags = { Name = "${var.name}-${each.key}" }
}

# Interface endpoints bill by the hour per AZ: see var.interface_endpoints for when they pay off.
locals {
  interface_services = var.interface_endpoints ? toset(["sqs", "sns", "logs", "ecr.api", "ecr.dkr"]) : toset([])
}

resource "aws_security_group" "endpoints" {
  count       = var.interface_endpoints ? 1 : 0
  name        = "${var.name}-endpoints"
  description = "Interface VPC endpoints: HTTPS from the tasks only"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_tasks" {
  for_each                     = var.interface_endpoints ? { api = aws_security_group.api.id, worker = aws_security_group.worker.id } : {}
  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from the ${each.key} tasks"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = each.value
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = local.interface_services
  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${var.aws_region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = local.private_subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true

  tags = { Name = "${var.name}-${each.key}" }
}
