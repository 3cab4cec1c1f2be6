"""Pinned inputs: base images by digest (`make pin-images`), the build backend, Actions by SHA."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from .images import DOCKERFILES, ROOT

PIN = ROOT / "infra" / "pin_images.py"
DIGEST = "sha256:" + "ab12" * 16
TAG_PATH = "/v2/library/python/manifests/3.11-slim-bookworm"


@pytest.fixture
def registry() -> Iterator[tuple[str, list[str]]]:
    """A registry on loopback with Docker Hub's anonymous token flow; and what it was asked."""
    asked: list[str] = []
    realm = ""  # set once the server has its port

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            asked.append(f"HEAD {self.path} {self.headers.get('Authorization')}")
            if self.path != TAG_PATH:
                self.send_response(404)
            elif self.headers.get("Authorization") != "Bearer anonymous-pull":
                self.send_response(401)
                self.send_header(
                    "WWW-Authenticate",
                    f'Bearer realm="{realm}",service="registry.test",'
                    'scope="repository:library/python:pull"',
                )
            else:
                self.send_response(200)
                self.send_header("Docker-Content-Digest", DIGEST)
            self.end_headers()

        def do_GET(self) -> None:
            url = urlparse(self.path)
            asked.append(f"GET {url.path} {sorted(parse_qs(url.query).items())}")
            body = json.dumps({"token": "anonymous-pull"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    realm = f"{base}/token"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield base, asked
    server.shutdown()
    server.server_close()


def _pin(tmp: Path, registry_url: str) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    copies = []
    for dockerfile in DOCKERFILES.values():
        copy = tmp / dockerfile.name
        copy.write_text(dockerfile.read_text())
        copies.append(copy)
    proc = subprocess.run(
        [sys.executable, str(PIN), *map(str, copies)],
        env={"REGISTRY_URL": registry_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc, copies


def test_pin_images_writes_the_digest_the_registry_serves(
    tmp_path: Path, registry: tuple[str, list[str]]
) -> None:
    url, asked = registry
    proc, copies = _pin(tmp_path, url)
    assert proc.returncode == 0, proc.stderr
    for copy in copies:
        original = (ROOT / copy.name).read_text()
        pinned = copy.read_text()
        assert f"ARG PYTHON_IMAGE=python:3.11-slim-bookworm@{DIGEST}\n" in pinned
        # Only that line changes.
        assert pinned.replace(f"@{DIGEST}", "") == re.sub(r"@sha256:[0-9a-f]{64}", "", original)
    # Asked once for both files: anonymous first, then with the token the challenge pointed to.
    assert asked == [
        f"HEAD {TAG_PATH} None",
        "GET /token [('scope', ['repository:library/python:pull']),"
        " ('service', ['registry.test'])]",
        f"HEAD {TAG_PATH} Bearer anonymous-pull",
    ]
    # Pinned again: the digest is replaced, not appended.
    again = subprocess.run(
        [sys.executable, str(PIN), *map(str, copies)],
        env={"REGISTRY_URL": url}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert copies[0].read_text().count(DIGEST) == 1


def test_without_a_registry_the_tag_is_kept_in_one_line(tmp_path: Path) -> None:
    proc, copies = _pin(tmp_path, "http://127.0.0.1:9")  # discard: nothing listens
    assert proc.returncode == 0
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith(
        "pin-images: http://127.0.0.1:9 unreachable"
    )
    assert proc.stdout.rstrip().endswith(
        "the Dockerfiles keep python:3.11-slim-bookworm, not pinned by digest"
    )
    assert all(copy.read_text() == (ROOT / copy.name).read_text() for copy in copies)


def test_a_tag_the_registry_lacks_fails(tmp_path: Path, registry: tuple[str, list[str]]) -> None:
    url, _ = registry
    for copy in _pin(tmp_path, url)[1]:
        copy.write_text(copy.read_text().replace("3.11-slim-bookworm", "3.11-no-such-tag"))
    proc = subprocess.run(
        [sys.executable, str(PIN), *(str(tmp_path / d.name) for d in DOCKERFILES.values())],
        env={"REGISTRY_URL": url}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert (
        proc.stderr == f"pin-images: {url}/v2/library/python/manifests/3.11-no-such-tag: HTTP 404\n"
    )


def test_the_build_backend_is_pinned_exactly() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert requires and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", r) for r in requires), (
        requires
    )


WORKFLOW = ROOT / "infra" / "ci" / "github-actions.yml"


def test_every_action_is_pinned_by_commit_sha_with_its_tag() -> None:
    uses = re.findall(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", WORKFLOW.read_text(), re.M)
    assert len(uses) >= 5
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), f"{ref}: not a commit SHA"
        assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+", comment), f"{ref}: no # vX.Y.Z comment"
    # One commit per action throughout the file.
    pins: dict[str, set[str]] = {}
    for ref, _ in uses:
        action, _, sha = ref.partition("@")
        pins.setdefault(action, set()).add(sha)
    assert all(len(shas) == 1 for shas in pins.values()), pins
