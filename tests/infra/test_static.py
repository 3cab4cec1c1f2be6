"""Offline checks of infra/terraform and the Dockerfiles: fmt, validate, checkov, hadolint."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .images import DOCKERFILES, ROOT, image, instructions
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
    stages = [args for keyword, args in instructions(dockerfile) if keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    assert all(re.fullmatch(r"python:3\.\d+-slim\S*( AS \w+)?", s) for s in stages), stages
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
