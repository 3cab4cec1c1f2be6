"""Run Terraform offline: a local provider mirror when one exists, the registry otherwise.

The CLI config goes to a temp file named by TF_CLI_CONFIG_FILE, so neither the developer's
~/.terraformrc nor this machine's paths leak into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

TERRAFORM_DIR = Path(__file__).resolve().parents[2] / "infra" / "terraform"
PROVIDER = Path("registry.terraform.io", "hashicorp", "aws")

# Where Terraform and distributions conventionally keep provider mirrors and plugin caches.
_MIRROR_ROOTS = (
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
    "/opt",
    "/usr/local/share",
    "/srv",
)
_MAX_DEPTH = 3


def find_mirror(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The directory holding registry.terraform.io/hashicorp/aws: TF_PROVIDER_MIRROR or a search."""
    override = environ.get("TF_PROVIDER_MIRROR", "").strip()
    if override:
        path = Path(override).expanduser()
        return path if (path / PROVIDER).is_dir() else None
    for root in _MIRROR_ROOTS:
        found = _search(Path(root).expanduser(), _MAX_DEPTH)
        if found is not None:
            return found
    return None


def _search(root: Path, depth: int) -> Path | None:
    # Bounded breadth: a few levels under a handful of roots, never a walk of the disk.
    if (root / PROVIDER).is_dir():
        return root
    if depth == 0:
        return None
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return None
    for child in children:
        found = _search(child, depth - 1)
        if found is not None:
            return found
    return None


def cli_config(mirror: Path | None) -> str:
    """The CLI config: install hashicorp providers from `mirror` only, or the registry."""
    if mirror is None:
        return ""
    return (
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        "}\n"
    )


class Terraform:
    """A working copy of infra/terraform in `workdir`, driven by the terraform CLI."""

    def __init__(self, workdir: Path, env: Mapping[str, str], timeout: float = 300) -> None:
        self.workdir = workdir
        self.timeout = timeout
        binary = shutil.which("terraform")
        if binary is None:
            raise RuntimeError(
                "terraform is not on PATH (https://developer.hashicorp.com/terraform/install)"
            )
        self.binary = binary
        config = workdir.parent / f"{workdir.name}.tfrc"
        config.write_text(cli_config(find_mirror(env)))
        self.env = {
            **env,
            "TF_CLI_CONFIG_FILE": str(config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }

    @classmethod
    def copy_of_module(cls, workdir: Path, env: Mapping[str, str], **kwargs: Any) -> Terraform:
        # The committed .terraform.lock.hcl comes along: init then checks the mirror's (or the
        # registry's) provider against its hashes, as a deploy's init does.
        shutil.copytree(
            TERRAFORM_DIR,
            workdir,
            ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"),
        )
        return cls(workdir, env, **kwargs)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, *args, "-no-color"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def init(self) -> None:
        self.run("init", "-input=false")

    def outputs(self) -> dict[str, Any]:
        raw = json.loads(self.run("output", "-json").stdout)
        return {name: value["value"] for name, value in raw.items()}


def resource_addresses(state_json: str) -> Iterator[str]:
    """Every resource address in `terraform show -json` of a state or of a saved plan."""

    def walk(module: dict[str, Any]) -> Iterator[str]:
        for resource in module.get("resources", []):
            yield str(resource["address"])
        for child in module.get("child_modules", []):
            yield from walk(child)

    shown = json.loads(state_json)
    values = shown.get("planned_values") or shown.get("values") or {}
    yield from walk(values.get("root_module") or {})
