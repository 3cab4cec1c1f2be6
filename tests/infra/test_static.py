"""Offline checks of infra/terraform and the Dockerfiles: fmt, validate, checkov, hadolint."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .images import DOCKERFILES, ROOT, base_images, image, instructions
from .tf import TERRAFORM_DIR, Terraform

CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_terraform_fmt(tmp_path: Path) -> None:
    tf = Terraform(tmp_path, os.environ)
    proc = subprocess.run(
        [tf.binary, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR)],
        env=tf.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_terraform_validate(tmp_path: Path) -> None:
    tf = Terraform.copy_of_module(tmp_path / "tf", os.environ)
    tf.run("init", "-backend=false")
    assert "The configuration is valid" in tf.run("validate").stdout


def test_checkov_passes_with_every_skip_explained() -> None:
    assert CHECKOV.exists(), f"{CHECKOV} missing: `make infra-test` installs it"
    proc = subprocess.run(
        [str(CHECKOV), "--directory", str(TERRAFORM_DIR), "--framework", "terraform",
         "--output", "json", "--quiet", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 50
    # Every skip sits on its resource with a reason after the check id.
    for path in TERRAFORM_DIR.glob("*.tf"):
        for skip in re.findall(r"#\s*checkov:skip=(.*)", path.read_text()):
            check_id, _, reason = skip.partition(":")
            assert re.fullmatch(r"CKV2?_AWS_\d+", check_id), skip
            assert len(reason.strip()) > 20, f"{path.name}: skip without a reason: {skip}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint(name: str) -> None:
    proc = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(DOCKERFILES[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_image_shape(name: str) -> None:
    dockerfile = DOCKERFILES[name]
    stages = base_images(dockerfile)
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    # One base for both stages, a build argument: a tag, or tag@digest once `make pin-images` ran.
    assert all(re.fullmatch(r"python:3\.\d+-slim\S*(@sha256:[0-9a-f]{64})?( AS \w+)?", s)
               for s in stages), stages  # fmt: skip
    assert {s.split()[0] for s in stages} == {stages[0].split()[0]}
    froms = [args for keyword, args in instructions(dockerfile) if keyword == "FROM"]
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms), froms
    built = image(dockerfile)
    assert built.cmd[:2] == ["python", "-m"], "exec-form CMD: SIGTERM reaches Python"
    assert built.user is not None and built.user not in {"0", "root"}
    assert built.healthcheck is not None and built.healthcheck[0] == "python"
    # Only the runtime dependencies: the dev/bench/localaws extras never get installed.
    installs = [args for keyword, args in instructions(dockerfile) if keyword == "RUN"]
    assert not any("[" in run or "-e " in run for run in installs), installs


def test_image_tag_has_no_default() -> None:
    # The repositories are IMMUTABLE: a default such as "latest" could be pushed only once.
    variables = (TERRAFORM_DIR / "variables.tf").read_text()
    block = variables[variables.index('variable "image_tag"') :].split("\n}\n")[0]
    assert re.search(r"^\s*type\s*=", block, re.M)
    assert not re.search(r"^\s*default\s*=", block, re.M), block


# --- the module's values, evaluated offline by `terraform console` -------------------------------


@pytest.fixture(scope="module")
def console_module(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    # An isolated AWS environment: console reads no data source, but the provider is configured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    tf = Terraform.copy_of_module(tmp_path_factory.mktemp("console") / "tf", env)
    tf.run("init", "-backend=false", "-lockfile=readonly")
    return tf


def evaluate(tf: Terraform, expression: str, *args: str) -> tuple[Any, str]:
    """(the value of `expression` with `args`, e.g. -var=..., and what console wrote to stderr)."""
    proc = subprocess.run(
        [tf.binary, "console", "-no-color", "-var=image_tag=test", *args],
        input=f"jsonencode({expression})\n",
        cwd=tf.workdir,
        env={**tf.env, "AWS_EC2_METADATA_DISABLED": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout.strip()
    return (json.loads(json.loads(out)) if out.startswith('"') else None), proc.stderr


@pytest.mark.parametrize(
    ("certificate", "domain", "scheme", "host"),
    [
        (None, None, "http", None),  # the ALB's own DNS name, known after apply
        ("arn:aws:acm:us-west-2:123456789012:certificate/x", None, "https", None),
        ("arn:aws:acm:us-west-2:123456789012:certificate/x", "orders.example.com", "https",
         "orders.example.com"),
        (None, "orders.example.com", "http", "orders.example.com"),
    ],
)  # fmt: skip
def test_the_url_follows_the_listener_and_the_domain(
    console_module: Terraform, certificate: str | None, domain: str | None, scheme: str,
    host: str | None,
) -> None:  # fmt: skip
    args = [f"-var=certificate_arn={certificate}"] if certificate else []
    args += [f"-var=domain_name={domain}"] if domain else []
    value, _ = evaluate(console_module, "local.api_scheme", *args)
    assert value == scheme
    if host is not None:
        value, _ = evaluate(console_module, "local.api_host", *args)
        assert value == host
    outputs = (TERRAFORM_DIR / "outputs.tf").read_text()
    assert 'value       = "${local.api_scheme}://${local.api_host}"' in outputs


def test_the_api_service_waits_for_whichever_listener_serves_it() -> None:
    ecs = (TERRAFORM_DIR / "ecs.tf").read_text()
    service = ecs[ecs.index('resource "aws_ecs_service" "api"') :].split("\n}\n")[0]
    assert "depends_on = [aws_lb_listener.http, aws_lb_listener.https]" in service


def test_both_tasks_get_the_payment_timeout(console_module: Terraform) -> None:
    value, stderr = evaluate(
        console_module,
        "{ for k, s in local.services : k => [s.environment.PAYMENT_SECONDS,"
        " s.environment.PAYMENT_TIMEOUT_SECONDS] }",
        "-var=payment_seconds=20",
        "-var=payment_timeout_seconds=45",
    )
    assert value == {"api": ["20", "45"], "worker": ["20", "45"]}, stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-var=payment_seconds=20"],  # the default timeout, 10 s, is shorter than a payment
        ["-var=payment_seconds=5", "-var=payment_timeout_seconds=5"],
        ["-var=payment_timeout_seconds=901"],
    ],
)
def test_a_payment_timeout_not_above_the_payment_time_is_refused(
    console_module: Terraform, args: list[str]
) -> None:
    _, stderr = evaluate(console_module, "var.payment_timeout_seconds", *args)
    assert "payment_timeout_seconds must be above payment_seconds" in " ".join(stderr.split())


def test_alarms_watch_a_whole_fleet_outage_and_latency(console_module: Terraform) -> None:
    alarms, stderr = evaluate(
        console_module,
        '{ for k, a in local.alarms : k => [a.metric, lookup(a, "statistic", null),'
        ' lookup(a, "extended", null), lookup(a, "comparison", "GreaterThanThreshold"),'
        " a.threshold, a.namespace] }",
        "-var=payment_seconds=3",
    )
    assert alarms is not None, stderr
    assert alarms["alb-5xx"] == [
        "HTTPCode_ELB_5XX_Count", "Sum", None, "GreaterThanThreshold", 0, "AWS/ApplicationELB",
    ]  # fmt: skip
    assert alarms["api-no-healthy-hosts"] == [
        "HealthyHostCount", "Minimum", None, "LessThanThreshold", 1, "AWS/ApplicationELB",
    ]  # fmt: skip
    # p99 of the ALB's view of the API: a sync order's payment (3 s) plus a margin.
    assert alarms["api-latency-p99"] == [
        "TargetResponseTime", None, "p99", "GreaterThanThreshold", 5, "AWS/ApplicationELB",
    ]  # fmt: skip
    observability = (TERRAFORM_DIR / "observability.tf").read_text()
    assert 'extended_statistic  = lookup(each.value, "extended", null)' in observability


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_prod_protects_what_a_destroy_would_lose(console_module: Terraform, env: str) -> None:
    var_file = TERRAFORM_DIR / "environments" / f"{env}.tfvars"
    value, stderr = evaluate(
        console_module,
        "[var.deletion_protection, var.alb_access_logs, var.ecr_force_delete,"
        " local.api_scheme, local.api_host]",
        f"-var-file={var_file}",
    )
    if env == "prod":
        assert value == [True, True, False, "https", "orders.example.com"], stderr
    else:
        assert value is None or value[:4] == [False, False, True, "http"], stderr
    for name, attribute in [
        ("aws_lb", "enable_deletion_protection = var.deletion_protection"),
        ("aws_dynamodb_table", "deletion_protection_enabled = var.deletion_protection"),
        ("aws_ecr_repository", "force_delete = var.ecr_force_delete"),
    ]:
        text = " ".join(
            " ".join(p.read_text().split())
            for p in TERRAFORM_DIR.glob("*.tf")
            if name in p.read_text()
        )
        assert " ".join(attribute.split()) in text, (name, attribute)


def test_the_provider_lock_is_committed_and_names_no_path() -> None:
    lock = (TERRAFORM_DIR / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/hashicorp/aws"' in lock
    assert re.search(r'"h1:[A-Za-z0-9+/=]{44}"', lock)
    assert "/" not in re.sub(r'"(h1|zh):[^"]+"|registry\.terraform\.io/hashicorp/aws|#.*', "", lock)
