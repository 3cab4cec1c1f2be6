"""infra/deploy.sh, the GitHub Actions example and the S3 backend example, checked offline."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .images import ROOT
from .tf import TERRAFORM_DIR, Terraform

DEPLOY = ROOT / "infra" / "deploy.sh"
TOOLS = Path(sys.executable).parent
BASH = shutil.which("bash") or "/bin/bash"

# Stand-ins for the tools deploy.sh drives: each appends its argv to calls.log, and answers what
# the script reads from it. `aws ecs describe-services` answers $FAKE_ECS/1.json, 2.json, ... in
# turn, then last.json; `aws ecr describe-images` finds the tag only when FAKE_PUSHED is set.
_FAKE = """#!{bash}
echo "$(basename "$0") $*" >> "{log}"
[ "${{1#-chdir=}}" != "$1" ] && shift
[ "$1" = login ] && while read -r _; do :; done  # a real login reads the password
case "$(basename "$0") $1" in
  "docker info") exit 0 ;;
  "terraform output")
    case "$3" in
      ecr_repository_urls)
        printf '{{"order-api": "%s", "order-processor": "%s"}}' "{repo}/order-api" \
          "{repo}/order-processor" ;;
      cluster_name) printf orderflow-dev ;;
      services)
        printf '{{"api": {{"name": "orderflow-dev-api", "task_definition": "{api_td}"}},'
        printf ' "worker": {{"name": "orderflow-dev-worker",'
        printf ' "task_definition": "{worker_td}"}}}}' ;;
      alb_url) printf '%s' "$FAKE_URL" ;;
    esac ;;
  "terraform show") printf '{{"variables": {{"image_tag": {{"value": "planned0tag1"}}}}}}' ;;
  "aws ecr")
    if [ "$2" = describe-images ]; then [ -n "${{FAKE_PUSHED:-}}" ]; exit $?; fi
    echo password ;;
  "aws ecs")
    n=$(( $(cat "$FAKE_ECS/n" 2>/dev/null || echo 0) + 1 ))
    echo "$n" > "$FAKE_ECS/n"
    [ -f "$FAKE_ECS/$n.json" ] || n=last
    cat "$FAKE_ECS/$n.json" ;;
esac
exit 0
"""
REPO = "123456789012.dkr.ecr.us-west-2.amazonaws.com/orderflow-dev"
TASK_DEFS = "arn:aws:ecs:us-west-2:123456789012:task-definition/orderflow-dev"
# What Terraform just applied (revision 8), and what ran before (revision 7).
NEW = {"api": f"{TASK_DEFS}-api:8", "worker": f"{TASK_DEFS}-worker:8"}
OLD = {"api": f"{TASK_DEFS}-api:7", "worker": f"{TASK_DEFS}-worker:7"}
CIRCUIT_BREAKER = "ECS deployment circuit breaker: tasks failed to start."


def _deployment(
    task_definition: str,
    status: str = "PRIMARY",
    rollout: str = "COMPLETED",
    running: int = 1,
    reason: str | None = None,
) -> dict[str, Any]:
    deployment: dict[str, Any] = {
        "status": status,
        "taskDefinition": task_definition,
        "rolloutState": rollout,
        "runningCount": running,
        "desiredCount": 1,
    }
    if reason:
        deployment["rolloutStateReason"] = reason
    return deployment


def _described(
    api: list[dict[str, Any]], worker: list[dict[str, Any]], events: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`aws ecs describe-services` of both services; `events` newest first, as ECS lists them."""
    return {
        "services": [
            {
                "serviceName": "orderflow-dev-api",
                "deployments": api,
                "events": [
                    {"createdAt": f"2026-12-02T16:{59 - i:02d}:00+00:00", "message": m}
                    for i, m in enumerate(events)
                ],
            },
            {"serviceName": "orderflow-dev-worker", "deployments": worker, "events": []},
        ]
    }


ROLLING = _described(
    [_deployment(NEW["api"], rollout="IN_PROGRESS", running=0), _deployment(OLD["api"], "ACTIVE")],
    [_deployment(NEW["worker"], rollout="IN_PROGRESS", running=0),
     _deployment(OLD["worker"], "ACTIVE")],
)  # fmt: skip
STABLE = _described([_deployment(NEW["api"])], [_deployment(NEW["worker"])])


def _ecs(tmp: Path, *responses: dict[str, Any]) -> str:
    """A directory of describe-services answers, in the order the fake gives them."""
    ecs = tmp / "ecs"
    ecs.mkdir()
    for i, response in enumerate(responses, 1):
        (ecs / f"{i}.json").write_text(json.dumps(response))
    (ecs / "last.json").write_text(json.dumps(responses[-1]))
    return str(ecs)


@pytest.fixture
def health_url() -> Iterator[tuple[str, list[str]]]:
    """A URL whose /health answers 200 on loopback, and the paths it was asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status":"ok"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()
    server.server_close()


def _bin(tmp: Path, fakes: list[str]) -> Path:
    """A PATH of the fakes plus the few real tools the script needs (git, python3, coreutils)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    log = tmp / "calls.log"
    for name in fakes:
        path = bin_dir / name
        path.write_text(
            _FAKE.format(bash=BASH, log=log, repo=REPO, api_td=NEW["api"], worker_td=NEW["worker"])
        )
        path.chmod(0o755)
    for name in ("git", "basename", "grep", "bash", "cat", "sleep"):
        found = shutil.which(name)
        assert found is not None, name
        (bin_dir / name).symlink_to(found)
    # The interpreter itself: a version manager's `python3` shim is a script needing more PATH.
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    return bin_dir


def _run(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(DEPLOY), *args],
        env={"PATH": str(bin_dir), "HOME": str(bin_dir.parent), "DEPLOY_POLL_SECONDS": "0", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_builder_deploy_says_so_in_one_line(tmp_path: Path) -> None:
    proc = _run(_bin(tmp_path, ["terraform", "aws"]), "deploy")
    assert proc.returncode == 1
    assert proc.stderr == (
        "deploy: no image builder: install docker (with its daemon running), podman or buildah\n"
    )
    assert (
        not (tmp_path / "calls.log").exists()
        or "terraform" not in (tmp_path / "calls.log").read_text()
    )


def test_unknown_environment_and_action_fail_in_one_line(tmp_path: Path) -> None:
    bin_dir = _bin(tmp_path, ["docker", "terraform", "aws"])
    proc = _run(bin_dir, "deploy", ENV="staging")
    assert (proc.returncode, proc.stderr.count("\n")) == (1, 1)
    assert "environments/staging.tfvars" in proc.stderr
    proc = _run(bin_dir, "ship")
    assert (proc.returncode, proc.stderr.count("\n")) == (1, 1)
    assert proc.stderr.startswith("deploy: usage:")


def _sha() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.mark.parametrize("builder", ["docker", "podman", "buildah"])
def test_deploy_builds_and_pushes_both_images_at_the_git_sha_then_applies_it(
    tmp_path: Path, builder: str, health_url: tuple[str, list[str]]
) -> None:
    sha = _sha()
    url, asked = health_url
    proc = _run(
        _bin(tmp_path, [builder, "terraform", "aws"]),
        "deploy",
        ALLOW_DIRTY="1",
        FAKE_ECS=_ecs(tmp_path, ROLLING, STABLE),
        FAKE_URL=url,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    expected_images = [f"{REPO}/order-api:{sha}", f"{REPO}/order-processor:{sha}"]
    builds = [c for c in calls if c.startswith(f"{builder} build ")]
    pushes = [c for c in calls if c.startswith(f"{builder} push ")]
    assert [b.split(" -t ")[1].split()[0] for b in builds] == expected_images
    assert all("--platform linux/amd64" in b for b in builds)
    assert pushes == [f"{builder} push {image}" for image in expected_images]
    login = f"{builder} login --username AWS --password-stdin {REPO.split('/')[0]}"
    assert login in calls
    applies = [c for c in calls if c.startswith("terraform ") and " apply " in c]
    # The repositories first (the state is empty), then everything with the new tag.
    assert "-target=aws_ecr_repository.this" in applies[0]
    assert applies[-1].endswith(f"-var=image_tag={sha}")
    assert "-var-file=" + str(TERRAFORM_DIR / "environments" / "dev.tfvars") in applies[-1]
    # Pushes happen before the apply that uses them.
    assert calls.index(pushes[-1]) < calls.index(applies[-1])
    # Then it watched the rollout until both services ran the new task definitions (once still
    # rolling, once stable), and the URL answered before it said so.
    described = [c for c in calls if c.startswith("aws ecs describe-services ")]
    assert len(described) == 2, described
    assert calls.index(applies[-1]) < calls.index(described[0])
    assert "--services orderflow-dev-api orderflow-dev-worker" in described[0]
    assert "--cluster orderflow-dev" in described[0]
    assert "api 0/1 tasks running, 2 deployment(s)" in proc.stdout
    assert asked == ["/health"]
    assert proc.stdout.splitlines()[-1] == f"deploy: dev runs {sha} at {url}"


def test_a_rollback_fails_the_deploy_with_the_service_events(
    tmp_path: Path, health_url: tuple[str, list[str]]
) -> None:
    url, asked = health_url
    rolled_back = _described(
        [
            _deployment(OLD["api"], rollout="IN_PROGRESS", running=0),
            _deployment(NEW["api"], "ACTIVE", rollout="FAILED", running=0, reason=CIRCUIT_BREAKER),
        ],
        [_deployment(NEW["worker"])],
        events=(
            "(service orderflow-dev-api) rolling back to deployment ecs-svc/7.",
            "(service orderflow-dev-api) deployment failed: tasks failed to start.",
            "(service orderflow-dev-api) has started 1 tasks: (task abc).",
        ),
    )
    proc = _run(
        _bin(tmp_path, ["docker", "terraform", "aws"]),
        "deploy",
        ALLOW_DIRTY="1",
        FAKE_ECS=_ecs(tmp_path, ROLLING, rolled_back),
        FAKE_URL=url,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == (
        f"deploy: orderflow-dev-api: ECS rolled the deployment of {NEW['api']} back: "
        + CIRCUIT_BREAKER
    )
    # The events, oldest first, so the last line is what ECS did last.
    assert [line.split(" ", 3)[-1] for line in lines[2:]] == [
        "(service orderflow-dev-api) has started 1 tasks: (task abc).",
        "(service orderflow-dev-api) deployment failed: tasks failed to start.",
        "(service orderflow-dev-api) rolling back to deployment ecs-svc/7.",
    ]
    assert "runs" not in proc.stdout and asked == []


def test_a_rollback_already_over_still_fails_the_deploy(tmp_path: Path) -> None:
    # The failed deployment is gone: the service is stable again, on the old task definition
    # (what `aws ecs wait services-stable` would call success).
    back_on_old = _described([_deployment(OLD["api"])], [_deployment(NEW["worker"])])
    proc = _run(
        _bin(tmp_path, ["docker", "terraform", "aws"]),
        "deploy",
        ALLOW_DIRTY="1",
        FAKE_ECS=_ecs(tmp_path, back_on_old),
        FAKE_URL="http://127.0.0.1:9",
    )
    assert proc.returncode == 1
    assert f"the service runs {OLD['api']} instead" in proc.stderr.splitlines()[0]


def test_a_url_that_does_not_answer_fails_the_deploy(tmp_path: Path) -> None:
    proc = _run(
        _bin(tmp_path, ["docker", "terraform", "aws"]),
        "deploy",
        ALLOW_DIRTY="1",
        FAKE_ECS=_ecs(tmp_path, STABLE),
        FAKE_URL="http://127.0.0.1:9",  # discard: nothing listens there
        DEPLOY_TIMEOUT_SECONDS="0",
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        "deploy: both services are stable but http://127.0.0.1:9/health does not answer"
    ), proc.stderr


def test_tag_redeploys_a_pushed_image_without_building(
    tmp_path: Path, health_url: tuple[str, list[str]]
) -> None:
    url, _ = health_url
    # No builder on PATH at all: a rollback needs none, nor a clean tree.
    proc = _run(
        _bin(tmp_path, ["terraform", "aws"]),
        "deploy",
        TAG="0123456789ab",
        FAKE_PUSHED="1",
        FAKE_ECS=_ecs(tmp_path, STABLE),
        FAKE_URL=url,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert not [c for c in calls if " build " in c or " push " in c or " login " in c]
    checked = [c for c in calls if "describe-images" in c]
    assert len(checked) == 2 and all("imageTag=0123456789ab" in c for c in checked)
    applies = [c for c in calls if c.startswith("terraform ") and " apply " in c]
    assert applies[-1].endswith("-var=image_tag=0123456789ab")
    assert "redeploying 0123456789ab, already pushed (nothing built)" in proc.stdout
    assert proc.stdout.splitlines()[-1] == f"deploy: dev runs 0123456789ab at {url}"


def test_tag_not_pushed_is_refused_before_the_apply(tmp_path: Path) -> None:
    proc = _run(_bin(tmp_path, ["terraform", "aws"]), "deploy", TAG="feedfacecafe")
    assert (proc.returncode, proc.stderr.count("\n")) == (1, 1)
    assert proc.stderr == (
        f"deploy: TAG=feedfacecafe is not in {REPO}/order-api: "
        "only a tag already pushed can be redeployed\n"
    )
    calls = (tmp_path / "calls.log").read_text().splitlines()
    applies = [c for c in calls if c.startswith("terraform ") and " apply " in c]
    assert all("-target=aws_ecr_repository.this" in c for c in applies), applies


def test_push_plan_and_apply_are_the_reviewed_steps_of_a_deploy(
    tmp_path: Path, health_url: tuple[str, list[str]]
) -> None:
    url, _ = health_url
    sha = _sha()
    bin_dir = _bin(tmp_path, ["docker", "terraform", "aws"])
    log = tmp_path / "calls.log"

    proc = _run(bin_dir, "push", ALLOW_DIRTY="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"deploy: both images are in ECR at {sha}"
    calls = log.read_text().splitlines()
    assert len([c for c in calls if c.startswith("docker push ")]) == 2
    applies = [c for c in calls if " apply " in c]
    assert all("-target=aws_ecr_repository.this" in c for c in applies), applies

    log.unlink()
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = subprocess.run(
        [BASH, str(DEPLOY), "plan"],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path), "PLAN_OUT": "tfplan"},
        cwd=workdir, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (plan,) = [c for c in log.read_text().splitlines() if " plan " in c]
    # Saved where the caller asked, not under infra/terraform (terraform -chdir would put it there).
    assert f"-var=image_tag={sha} -out={workdir / 'tfplan'}" in plan

    log.unlink()
    (workdir / "tfplan").write_text("a saved plan")
    proc = _run(
        bin_dir, "apply", str(workdir / "tfplan"), FAKE_ECS=_ecs(tmp_path, STABLE), FAKE_URL=url
    )
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert f"terraform -chdir={TERRAFORM_DIR} apply -input=false {workdir / 'tfplan'}" in calls
    assert not [c for c in calls if c.startswith("docker ") and " info" not in c]
    assert any(c.startswith("aws ecs describe-services ") for c in calls)
    # The tag is the plan's, whatever commit the apply job has checked out.
    assert proc.stdout.splitlines()[-1] == f"deploy: dev runs planned0tag1 at {url}"


def test_apply_without_a_saved_plan_fails_in_one_line(tmp_path: Path) -> None:
    proc = _run(_bin(tmp_path, ["docker", "terraform", "aws"]), "apply", "no-such-plan")
    assert (proc.returncode, proc.stderr.count("\n")) == (1, 1)
    assert proc.stderr.startswith("deploy: usage: infra/deploy.sh apply <a plan saved by")


def test_shellcheck() -> None:
    proc = subprocess.run(
        [str(TOOLS / "shellcheck"), str(DEPLOY), str(ROOT / ".ci" / "run")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_on_the_workflow_example() -> None:
    workflow = ROOT / "infra" / "ci" / "github-actions.yml"
    proc = subprocess.run(
        [str(TOOLS / "actionlint"), "-shellcheck", str(TOOLS / "shellcheck"), str(workflow)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "id-token: write" in workflow.read_text()


def _jobs(workflow: str) -> dict[str, str]:
    """Each job's text in the workflow, by job id (two-space indented keys under `jobs:`)."""
    parts = re.split(r"^  ([\w-]+):\n", workflow.split("\njobs:\n", 1)[1], flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_workflow_applies_the_saved_plan_after_an_approval() -> None:
    jobs = _jobs((ROOT / "infra" / "ci" / "github-actions.yml").read_text())
    assert set(jobs) == {"test", "plan", "apply"}
    plan, apply = jobs["plan"], jobs["apply"]
    assert "needs: test" in plan and "needs: plan" in apply
    # The plan job's environment has no reviewers; the apply job's has them, so it waits.
    assert "environment: ${{ inputs.environment || 'dev' }}-plan" in plan
    assert "environment: ${{ inputs.environment || 'dev' }}\n" in apply
    assert "PLAN_OUT: ${{ runner.temp }}/tfplan" in plan
    assert "infra/deploy.sh push\n" in plan and "infra/deploy.sh plan\n" in plan
    assert "actions/upload-artifact@" in plan and "actions/download-artifact@" in apply
    assert 'run: infra/deploy.sh apply "$RUNNER_TEMP/tfplan"' in apply
    # Nothing applies without the saved plan, nor auto-approves.
    for job in jobs.values():
        assert "make deploy" not in job and "AUTO_APPROVE" not in job and "ALLOW_DIRTY" not in job
    # The backend from CI: backend.tf copied in (ignored by git, so the tree stays clean for the
    # image tag) and its bucket from the environment's variables.
    for job in (plan, apply):
        assert "cp infra/terraform/backend.tf.example infra/terraform/backend.tf" in job
        assert "TF_BACKEND_CONFIG: bucket=${{ vars.TF_STATE_BUCKET }}" in job
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", "infra/terraform/backend.tf"], check=False
    )
    assert ignored.returncode == 0


def test_the_backend_comes_from_tf_backend_config(tmp_path: Path) -> None:
    bin_dir = _bin(tmp_path, ["terraform", "aws"])
    backend = TERRAFORM_DIR / "backend.tf"
    if backend.exists():
        pytest.skip("infra/terraform/backend.tf is a developer's own: this test would replace it")
    backend.write_text("# from the test\n")
    try:
        proc = _run(bin_dir, "plan", TF_BACKEND_CONFIG="bucket=b key=orderflow/dev/s region=r")
    finally:
        backend.unlink()
    assert proc.returncode == 0, proc.stderr
    (init,) = [c for c in (tmp_path / "calls.log").read_text().splitlines() if " init " in c]
    assert init.endswith(
        "init -input=false -lockfile=readonly -reconfigure -backend-config=bucket=b"
        " -backend-config=key=orderflow/dev/s -backend-config=region=r"
    )


def test_actionlint_fails_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = (ROOT / "infra" / "ci" / "github-actions.yml").read_text()
    broken.write_text(text.replace("runs-on: ubuntu-24.04", "runs-on: ${{ matrix.os }}", 1))
    proc = subprocess.run(
        [str(TOOLS / "actionlint"), str(broken)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout


def test_backend_example_is_valid_terraform(tmp_path: Path) -> None:
    tf = Terraform.copy_of_module(tmp_path / "tf", os.environ)
    shutil.copy(TERRAFORM_DIR / "backend.tf.example", tf.workdir / "backend.tf")
    tf.run("init", "-backend=false")
    assert "The configuration is valid" in tf.run("validate").stdout
    text = (tf.workdir / "backend.tf").read_text()
    assert 'backend "s3"' in text and "use_lockfile = true" in text
    for env in ("dev", "prod"):
        config = (TERRAFORM_DIR / "environments" / f"{env}.s3.tfbackend.example").read_text()
        assert f'key    = "orderflow/{env}/terraform.tfstate"' in config
