"""infra/terraform applied to the local AWS: create, converge, carry an order, destroy to nothing.

The provider's endpoints point at this module's own local AWS, run with IAM enforced, through an
override file in a copy of the module, so the module itself stays exactly what a real account
gets. Terraform and the test sign as the account's administrator; the API and the worker run
under credentials from sts:AssumeRole on the task roles Terraform made, so a permission the
roles lack fails here as it would on AWS. Resources the local AWS cannot create are in
UNSUPPORTED: planned here, left out of the apply.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiobotocore.session import get_session

from devstack.env import REGION
from devstack.local_aws import local_aws_process
from services.common.aws import client_config
from services.common.settings import AwsSettings

from ..helpers import aws_client, order_body
from .images import BuiltImage, Service
from .scenario import (
    DECLINED_CUSTOMER,
    POISON,
    Outcome,
    free_port,
    order_journey,
    service_envs,
    wait_healthy,
)
from .tf import TERRAFORM_DIR, Terraform, resource_addresses

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

# What moto 5.2.5 cannot do, and so what only validate and plan prove (named in infra/README.md):
UNSUPPORTED = {
    # logs:PutQueryDefinition is not implemented.
    "aws_cloudwatch_query_definition.this": "for_each = {}",
    # application-autoscaling:ListTagsForResource is not implemented; the provider reads tags.
    "aws_appautoscaling_target.worker": "count = 0",
    "aws_appautoscaling_target.api": "count = 0",
    "aws_appautoscaling_policy.api": (
        'for_each = {}\n  service_namespace = "ecs"\n  resource_id = "unused"\n'
        '  scalable_dimension = "ecs:service:DesiredCount"'
    ),
    "aws_appautoscaling_policy.worker_backlog": (
        'count = 0\n  service_namespace = "ecs"\n  resource_id = "unused"\n'
        '  scalable_dimension = "ecs:service:DesiredCount"'
    ),
    # SQS RedriveAllowPolicy is not a queue attribute moto knows; the provider waits for it.
    "aws_sqs_queue_redrive_allow_policy.dlq": "count = 0",
}
# What moto stores differently from AWS, so a refresh would plan a change that AWS never shows;
# the second plan ignores exactly these attributes (named in infra/README.md too):
MOTO_DRIFT = {
    # moto returns the policy re-serialized with spaces; the provider diffs the whitespace.
    "aws_sqs_queue.orders": ["redrive_policy"],
    # moto's DescribeSecurityGroupRules returns no Description.
    "aws_vpc_security_group_ingress_rule.alb_http": ["description"],
    "aws_vpc_security_group_ingress_rule.api_from_alb": ["description"],
    "aws_vpc_security_group_egress_rule.alb_to_api": ["description"],
    "aws_vpc_security_group_egress_rule.https_out": ["description"],
    # moto's DescribeServices has no availabilityZoneRebalancing, nor the API's
    # healthCheckGracePeriodSeconds (both services keep their own ignore of desired_count, which
    # autoscaling owns: an override's ignore_changes replaces the module's).
    "aws_ecs_service.api": [
        "availability_zone_rebalancing",
        "desired_count",
        "health_check_grace_period_seconds",
    ],
    "aws_ecs_service.worker": ["availability_zone_rebalancing", "desired_count"],
}
SERVICES = [
    "applicationautoscaling", "cloudwatch", "dynamodb", "ec2", "ecr", "ecs", "elbv2", "iam",
    "kms", "logs", "sns", "sqs", "sts",
]  # fmt: skip


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """This module's own local AWS, enforcing IAM on assumed-role credentials."""
    with local_aws_process(extra_args=("--enforce-iam",)) as url:
        yield url


@pytest.fixture(scope="module")
def aws(endpoint: str) -> AwsSettings:
    return AwsSettings(region=REGION, endpoint_url=endpoint)


@pytest.fixture(scope="module")
async def sqs(aws: AwsSettings) -> AsyncIterator[SQSClient]:
    async with aws_client(aws, "sqs") as client:
        yield client


@pytest.fixture(scope="module")
async def sns(aws: AwsSettings) -> AsyncIterator[SNSClient]:
    async with aws_client(aws, "sns") as client:
        yield client


def _provider_override(endpoint: str) -> str:
    endpoints = "\n".join(f'    {name} = "{endpoint}"' for name in SERVICES)
    return (
        'provider "aws" {\n'
        '  access_key                  = "testing"\n'
        '  secret_key                  = "testing"\n'
        "  skip_credentials_validation = true\n"
        "  skip_metadata_api_check     = true\n"
        "  skip_region_validation      = true\n"
        f"  endpoints {{\n{endpoints}\n  }}\n"
        "}\n"
    )


def _local_aws_overrides() -> str:
    """Leave out UNSUPPORTED resources and ignore the MOTO_DRIFT attributes."""
    bodies = dict(UNSUPPORTED)
    for address, attributes in MOTO_DRIFT.items():
        ignore = f"lifecycle {{\n    ignore_changes = [{', '.join(attributes)}]\n  }}"
        bodies[address] = f"{bodies[address]}\n  {ignore}" if address in bodies else ignore
    blocks = []
    for address, body in bodies.items():
        kind, name = address.split(".")
        blocks.append(f'resource "{kind}" "{name}" {{\n  {body}\n}}\n')
    return "\n".join(blocks)


class Stack:
    def __init__(self, tf: Terraform, name: str) -> None:
        self.tf = tf
        self.name = name
        self.outputs: dict[str, Any] = {}
        self.destroyed = False

    def planned(self, *args: str) -> set[str]:
        plan = self.tf.workdir / "plan.bin"
        self.tf.run("plan", f"-out={plan}", *args)
        return set(resource_addresses(self.tf.run("show", "-json", str(plan)).stdout))


@pytest.fixture(scope="module")
def stack(
    endpoint: str, tmp_path_factory: pytest.TempPathFactory, module_aws_env: None
) -> Iterator[Stack]:
    name = f"t{uuid.uuid4().hex[:8]}"
    tf = Terraform.copy_of_module(tmp_path_factory.mktemp("terraform") / "module", os.environ)
    (tf.workdir / "localaws_override.tf").write_text(_provider_override(endpoint))
    (tf.workdir / "terraform.tfvars").write_text(
        f'name = "{name}"\naws_region = "us-east-1"\npayment_seconds = 0.2\nimage_tag = "test"\n'
    )
    tf.init()
    stack = Stack(tf, name)
    yield stack
    if not stack.destroyed:
        tf.run("destroy", "-auto-approve", check=False)


def test_plan_covers_what_the_local_aws_cannot_apply(stack: Stack) -> None:
    planned = {address.split("[")[0] for address in stack.planned()}
    assert set(UNSUPPORTED) <= planned
    assert {"aws_ecs_service.api", "aws_lb.this", "aws_nat_gateway.this"} <= planned


def test_plan_lab_account_variant(stack: Stack) -> None:
    # An existing role instead of created ones, and HTTPS with a certificate.
    planned = stack.planned(
        "-var=existing_role_arn=arn:aws:iam::123456789012:role/LabRole",
        "-var=certificate_arn=arn:aws:acm:us-east-1:123456789012:certificate/abc",
    )
    assert not {a for a in planned if a.startswith("aws_iam_role.")}
    assert "aws_lb_listener.https[0]" in planned


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_plan_each_environment(stack: Stack, env: str) -> None:
    var_file = TERRAFORM_DIR / "environments" / f"{env}.tfvars"
    planned = stack.planned(f"-var-file={var_file}")
    assert 'aws_appautoscaling_policy.api["requests"]' in planned
    assert {'aws_vpc_endpoint.gateway["dynamodb"]', 'aws_vpc_endpoint.gateway["s3"]'} <= planned
    interface = {a for a in planned if a.startswith("aws_vpc_endpoint.interface")}
    # prod turns the interface endpoints on (and subscribes an e-mail); dev keeps them off.
    assert bool(interface) == (env == "prod")
    assert ("aws_sns_topic_subscription.alarm_email[0]" in planned) == (env == "prod")


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("image_tag=latest", "image_tag must be a Docker tag"),
        ("worker_max_count=0", "worker_max_count must be at least worker_min_count"),
        ("api_max_count=1", "api_max_count must be at least api_min_count"),
        ("acceptable_delay_seconds=0.001", "long enough for one task to pay one order"),
        ("alarm_email=not-an-address", "alarm_email must be an e-mail address"),
    ],
)
def test_variable_validations_refuse(stack: Stack, variable: str, message: str) -> None:
    proc = stack.tf.run("plan", f"-var={variable}", check=False)
    assert proc.returncode == 1
    assert message in " ".join(proc.stderr.split()), proc.stderr


async def _inventory(aws: AwsSettings) -> dict[str, set[str]]:
    """Every resource of the kinds the module creates, as the local AWS lists them."""
    # Any: the service names are plain strings, not the stubs' per-service literals.
    session: Any = get_session()
    config = client_config(pool_size=4, read_timeout=30)

    def client(service: str) -> Any:
        return session.create_client(
            service, region_name=aws.region, endpoint_url=aws.endpoint_url, config=config
        )

    found: dict[str, set[str]] = {}
    async with client("ec2") as ec2:
        found["vpcs"] = {v["VpcId"] for v in (await ec2.describe_vpcs())["Vpcs"]}
        found["subnets"] = {s["SubnetId"] for s in (await ec2.describe_subnets())["Subnets"]}
        found["security_groups"] = {
            g["GroupId"] for g in (await ec2.describe_security_groups())["SecurityGroups"]
        }
        found["route_tables"] = {
            r["RouteTableId"] for r in (await ec2.describe_route_tables())["RouteTables"]
        }
        found["internet_gateways"] = {
            g["InternetGatewayId"]
            for g in (await ec2.describe_internet_gateways())["InternetGateways"]
        }
        found["nat_gateways"] = {
            g["NatGatewayId"]
            for g in (await ec2.describe_nat_gateways())["NatGateways"]
            if g["State"] != "deleted"
        }
        found["addresses"] = {
            a["AllocationId"] for a in (await ec2.describe_addresses())["Addresses"]
        }
        found["flow_logs"] = {f["FlowLogId"] for f in (await ec2.describe_flow_logs())["FlowLogs"]}
        found["vpc_endpoints"] = {
            e["VpcEndpointId"]
            for e in (await ec2.describe_vpc_endpoints())["VpcEndpoints"]
            if e["State"].lower() != "deleted"
        }
    async with client("sns") as sns:
        found["topics"] = {t["TopicArn"] for t in (await sns.list_topics())["Topics"]}
        found["subscriptions"] = {
            s["SubscriptionArn"] for s in (await sns.list_subscriptions())["Subscriptions"]
        }
    async with client("sqs") as sqs:
        found["queues"] = set((await sqs.list_queues()).get("QueueUrls", []))
    async with client("dynamodb") as dynamodb:
        found["tables"] = set((await dynamodb.list_tables())["TableNames"])
    async with client("ecr") as ecr:
        found["repositories"] = {
            r["repositoryName"] for r in (await ecr.describe_repositories())["repositories"]
        }
    async with client("ecs") as ecs:
        clusters = (await ecs.list_clusters())["clusterArns"]
        described = (await ecs.describe_clusters(clusters=clusters))["clusters"] if clusters else []
        found["clusters"] = {c["clusterArn"] for c in described if c["status"] == "ACTIVE"}
        found["task_definitions"] = set(
            (await ecs.list_task_definitions(status="ACTIVE"))["taskDefinitionArns"]
        )
    async with client("elbv2") as elbv2:
        found["load_balancers"] = {
            lb["LoadBalancerArn"] for lb in (await elbv2.describe_load_balancers())["LoadBalancers"]
        }
        found["target_groups"] = {
            tg["TargetGroupArn"] for tg in (await elbv2.describe_target_groups())["TargetGroups"]
        }
    async with client("iam") as iam:
        found["roles"] = {r["RoleName"] for r in (await iam.list_roles())["Roles"]}
    async with client("logs") as logs:
        found["log_groups"] = {
            g["logGroupName"] for g in (await logs.describe_log_groups())["logGroups"]
        }
        found["metric_filters"] = {
            f["filterName"] for f in (await logs.describe_metric_filters())["metricFilters"]
        }
    async with client("cloudwatch") as cloudwatch:
        found["alarms"] = {
            a["AlarmName"] for a in (await cloudwatch.describe_alarms())["MetricAlarms"]
        }
        found["dashboards"] = {
            d["DashboardName"] for d in (await cloudwatch.list_dashboards())["DashboardEntries"]
        }
    async with client("kms") as kms:
        aliases = (await kms.list_aliases())["Aliases"]
        # AWS-managed keys (alias/aws/...) appear with a service's first encrypted resource
        # and belong to the account, never to Terraform.
        managed = {a.get("TargetKeyId") for a in aliases if a["AliasName"].startswith("alias/aws/")}
        keys = [k["KeyId"] for k in (await kms.list_keys())["Keys"]]
        found["kms_keys"] = {
            key
            for key in keys
            if key not in managed
            and (await kms.describe_key(KeyId=key))["KeyMetadata"]["KeyState"] == "Enabled"
        }
        found["kms_aliases"] = {a["AliasName"] for a in aliases} - {
            a["AliasName"] for a in aliases if a["AliasName"].startswith("alias/aws/")
        }
    return found


@pytest.fixture(scope="module")
async def before_apply(stack: Stack, aws: AwsSettings) -> dict[str, set[str]]:
    return await _inventory(aws)


@pytest.fixture(scope="module")
def applied(stack: Stack, before_apply: dict[str, set[str]]) -> Stack:
    (stack.tf.workdir / "local_aws_gaps_override.tf").write_text(_local_aws_overrides())
    stack.tf.run("apply", "-auto-approve")
    stack.outputs = stack.tf.outputs()
    return stack


async def test_apply_creates_the_stack(applied: Stack, aws: AwsSettings) -> None:
    now = await _inventory(aws)
    state = set(resource_addresses(applied.tf.run("show", "-json").stdout))
    # fmt: off
    kinds = ["aws_vpc", "aws_nat_gateway", "aws_sns_topic", "aws_iam_role", "aws_ecs_service",
             "aws_lb", "aws_ecr_repository", "aws_dynamodb_table", "aws_cloudwatch_dashboard"]
    # fmt: on
    for kind in kinds:
        assert any(address.startswith(f"{kind}.") for address in state), kind
    assert applied.outputs["topic_arn"] in now["topics"]
    assert applied.outputs["queue_url"] in now["queues"]
    assert applied.outputs["orders_table"] in now["tables"]
    assert {f"{applied.name}/order-api", f"{applied.name}/order-processor"} <= now["repositories"]
    assert applied.outputs["alb_url"].startswith("http://")


def test_second_plan_shows_no_changes(applied: Stack) -> None:
    proc = applied.tf.run("plan", "-detailed-exitcode", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def _task_credentials(aws: AwsSettings, role_name: str) -> dict[str, str]:
    """A task's AWS variables: credentials from sts:AssumeRole on its task role, as ECS gives."""
    async with aws_client(aws, "iam") as iam, aws_client(aws, "sts") as sts:
        arn = (await iam.get_role(RoleName=role_name))["Role"]["Arn"]
        got = await sts.assume_role(RoleArn=arn, RoleSessionName=f"{role_name}-task")
    creds = got["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
    }


async def test_services_pay_an_order_on_the_terraform_topology(
    applied: Stack,
    aws: AwsSettings,
    sns: SNSClient,
    sqs: SQSClient,
    tmp_path: Path,
    images: dict[str, BuiltImage],
) -> None:
    # Each service under its own task role: every call it makes is checked against what
    # iam.tf grants, on the table, queue, DLQ, topic and key Terraform made.
    outcome = await order_journey(
        aws,
        sns,
        sqs,
        topic_arn=applied.outputs["topic_arn"],
        queue_url=applied.outputs["queue_url"],
        dlq_url=applied.outputs["dlq_url"],
        tmp=tmp_path,
        images=images,
        extra_env={"ORDERS_TABLE": applied.outputs["orders_table"]},
        api_extra=await _task_credentials(aws, f"{applied.name}-api-task"),
        worker_extra=await _task_credentials(aws, f"{applied.name}-worker-task"),
        decline=True,
    )
    assert outcome.exit_codes == {"api": 0, "worker": 0}
    assert len(outcome.dead_letters) == 2, outcome.dead_letters
    assert POISON in outcome.dead_letters
    assert any(DECLINED_CUSTOMER in body for body in outcome.dead_letters), outcome.dead_letters
    paid = [line for line in outcome.lines["worker"] if line.get("event") == "order_paid"]
    assert [line["order_id"] for line in paid] == [outcome.order_id]
    denied = [line for line in outcome.all_lines() if "AccessDenied" in json.dumps(line)]
    assert not denied, denied


async def test_a_permission_removed_from_the_worker_role_fails_loudly(
    applied: Stack, aws: AwsSettings, tmp_path: Path, images: dict[str, BuiltImage]
) -> None:
    """The worker's role without kms:Decrypt on the table's key: every claim is refused."""
    role = f"{applied.name}-worker-task"
    async with aws_client(aws, "iam") as iam:
        got = await iam.get_role_policy(RoleName=role, PolicyName="worker-task")
        granted = got["PolicyDocument"]
        document: dict[str, Any] = granted if isinstance(granted, dict) else json.loads(granted)
        kept = [s for s in document["Statement"] if "kms:Decrypt" not in str(s.get("Action"))]
        assert len(kept) == len(document["Statement"]) - 1, document
        await iam.put_role_policy(
            RoleName=role,
            PolicyName="worker-task",
            PolicyDocument=json.dumps({**document, "Statement": kept}),
        )
        try:
            outcome = await _order_under_task_roles(applied, aws, tmp_path, images)
        finally:
            await iam.put_role_policy(
                RoleName=role, PolicyName="worker-task", PolicyDocument=json.dumps(document)
            )
    worker = outcome.lines["worker"]
    denied = [line for line in worker if line.get("event") == "aws_permanent_error"]
    assert denied, worker
    # Loud: an error line with the AWS code and what was refused, never a quiet retry.
    assert denied[0]["level"] == "error", denied[0]
    assert denied[0]["code"] == "AccessDeniedException", denied[0]
    # The process stays named on the line; the AWS service has a field of its own.
    assert (denied[0]["service"], denied[0]["aws_service"]) == ("worker", "dynamodb"), denied[0]
    assert "kms:Decrypt" in denied[0]["detail"], denied[0]
    assert not [line for line in worker if line.get("event") == "state_unavailable"], worker
    # Unhealthy: the image's own health check failed while the worker ran (ECS replaces it).
    assert outcome.exit_codes["healthcheck"] != 0, worker
    assert not [line for line in worker if line.get("event") == "order_paid"]


async def _order_under_task_roles(
    applied: Stack, aws: AwsSettings, tmp: Path, images: dict[str, BuiltImage]
) -> Outcome:
    """Queue one order through the API, and run the worker until a denial makes it unhealthy."""
    port = free_port()
    worker_role = await _task_credentials(aws, f"{applied.name}-worker-task")
    api_env, worker_env = service_envs(
        aws,
        port,
        topic_arn=applied.outputs["topic_arn"],
        queue_url=applied.outputs["queue_url"],
        extra_env={"ORDERS_TABLE": applied.outputs["orders_table"]},
        api_extra=await _task_credentials(aws, f"{applied.name}-api-task"),
        worker_extra={**worker_role, "NUM_WORKERS": "2", "SHUTDOWN_GRACE_SECONDS": "2"},
    )
    url = f"http://127.0.0.1:{port}"
    with (
        Service(images["api"], api_env, tmp) as api,
        Service(images["worker"], worker_env, tmp) as worker,
    ):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(url, http)
            async with http.post(f"{url}/orders/async", json=order_body()) as resp:
                assert resp.status == 202, await resp.text()
                order_id = (await resp.json())["order_id"]
        await worker.wait_for(lambda line: line.get("event") == "liveness_failed", within=60)
        # What ECS runs: the HEALTHCHECK command, beside the worker, with its environment.
        checked = worker.healthcheck().returncode
        codes = {"api": api.terminate(), "worker": worker.terminate(), "healthcheck": checked}
        return Outcome(order_id, codes, [], {"api": api.lines, "worker": worker.lines})


async def test_destroy_leaves_nothing(
    applied: Stack, aws: AwsSettings, before_apply: dict[str, set[str]]
) -> None:
    applied.tf.run("destroy", "-auto-approve")
    applied.destroyed = True
    after = await _inventory(aws)
    left = {kind: sorted(after[kind] - before_apply[kind]) for kind in after}
    assert not any(left.values()), json.dumps(left, indent=1)
