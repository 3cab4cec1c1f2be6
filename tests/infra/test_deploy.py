"""infra/deploy.sh, the GitHub Actions example and the S3 backend example, checked offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .images import ROOT
from .tf import TERRAFORM_DIR, Terraform

DEPLOY = ROOT / "infra" / "deploy.sh"
TOOLS = Path(sys.executable).parent
BASH = shutil.which("bash") or "/bin/bash"

# Stand-ins for the tools deploy.sh drives: each appends its argv to calls.log, and answers what
# the script reads from it.
_FAKE = """#!{bash}
echo "$(basename "$0") $*" >> "{log}"
[ "${{1#-chdir=}}" != "$1" ] && shift
[ "$1" = login ] && while read -r _; do :; done  # a real login reads the password
case "$(basename "$0") $1" in
  "docker info") exit 0 ;;
  "terraform output")
    repo=123456789012.dkr.ecr.us-west-2.amazonaws.com/orderflow-dev
    printf '{{"order-api": "%s", "order-processor": "%s"}}' "$repo/order-api" \
      "$repo/order-processor" ;;
  "aws ecr")
    [ "$2" = describe-images ] && exit 1
    echo password ;;
esac
exit 0
"""


def _bin(tmp: Path, fakes: list[str]) -> Path:
    """A PATH of the fakes plus the few real tools the script needs (git, python3, coreutils)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    log = tmp / "calls.log"
    for name in fakes:
        path = bin_dir / name
        path.write_text(_FAKE.format(bash=BASH, log=log))
        path.chmod(0o755)
    for name in ("git", "basename", "grep", "bash"):
        found = shutil.which(name)
        assert found is not None, name
        (bin_dir / name).symlink_to(found)
    # The interpreter itself: a version manager's `python3` shim is a script needing more PATH.
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    return bin_dir


def _run(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(DEPLOY), *args],
        env={"PATH": str(bin_dir), "HOME": str(bin_dir.parent), **env},
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


@pytest.mark.parametrize("builder", ["docker", "podman", "buildah"])
def test_deploy_builds_and_pushes_both_images_at_the_git_sha_then_applies_it(
    tmp_path: Path, builder: str
) -> None:
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    proc = _run(_bin(tmp_path, [builder, "terraform", "aws"]), "deploy", ALLOW_DIRTY="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    repo = "123456789012.dkr.ecr.us-west-2.amazonaws.com/orderflow-dev"
    expected_images = [f"{repo}/order-api:{sha}", f"{repo}/order-processor:{sha}"]
    builds = [c for c in calls if c.startswith(f"{builder} build ")]
    pushes = [c for c in calls if c.startswith(f"{builder} push ")]
    assert [b.split(" -t ")[1].split()[0] for b in builds] == expected_images
    assert all("--platform linux/amd64" in b for b in builds)
    assert pushes == [f"{builder} push {image}" for image in expected_images]
    login = f"{builder} login --username AWS --password-stdin {repo.split('/')[0]}"
    assert login in calls
    applies = [c for c in calls if c.startswith("terraform ") and " apply " in c]
    # The repositories first (the state is empty), then everything with the new tag.
    assert "-target=aws_ecr_repository.this" in applies[0]
    assert applies[-1].endswith(f"-var=image_tag={sha}")
    assert "-var-file=" + str(TERRAFORM_DIR / "environments" / "dev.tfvars") in applies[-1]
    # Pushes happen before the apply that uses them.
    assert calls.index(pushes[-1]) < calls.index(applies[-1])


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
