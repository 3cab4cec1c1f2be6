"""`make pin-images`: resolve the Dockerfiles' base image tag to its digest and write it in.

    python3 infra/pin_images.py Dockerfile.api Dockerfile.worker

Each file's `ARG PYTHON_IMAGE=<name>:<tag>[@sha256:...]` becomes `<name>:<tag>@sha256:<digest>`
of the manifest (or multi-platform index) the registry serves for that tag now: every later
build gets the same bytes until this runs again. The tag stays in front for the reader; a
digest present decides what is pulled. Asks the image's own registry (Docker Hub for `python`;
REGISTRY_URL overrides, e.g. a mirror) with the registry API's anonymous token flow. With no
registry reachable, it keeps the tags, says so in one line and exits 0: the build still works.
Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ARG = re.compile(r"^ARG PYTHON_IMAGE=(?P<ref>\S+)$", re.M)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# What a multi-platform tag is served as; asking for the index keeps one digest for every
# platform (the build picks linux/amd64 from it).
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
TIMEOUT = 15.0


class Unreachable(Exception):
    """No answer from the registry: not an error, the tag is kept."""


def split_reference(ref: str) -> tuple[str, str, str]:
    """(registry base URL, repository, tag) of `name:tag[@digest]`, Docker Hub by default."""
    name_tag = ref.split("@", 1)[0]
    name, _, tag = name_tag.rpartition(":")
    if not name or "/" in tag:
        raise ValueError(f"{ref}: not name:tag")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repository = first, rest
    else:
        host, repository = "registry-1.docker.io", name if "/" in name else f"library/{name}"
    base = os.environ.get("REGISTRY_URL", "").rstrip("/") or f"https://{host}"
    return base, repository, tag


def _bearer_token(challenge: str) -> str:
    """The anonymous pull token the registry's WWW-Authenticate: Bearer challenge points to."""
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", "")
    if not challenge.lower().startswith("bearer ") or not realm:
        raise RuntimeError(f"unsupported registry authentication: {challenge!r}")
    url = f"{realm}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        body = json.load(response)
    return str(body.get("token") or body.get("access_token") or "")


def resolve(ref: str) -> str:
    """The digest the registry serves for `ref`'s tag now."""
    base, repository, tag = split_reference(ref)
    url = f"{base}/v2/{repository}/manifests/{tag}"
    headers = {"Accept": ACCEPT}
    for _ in range(2):
        request = urllib.request.Request(url, method="HEAD", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                digest = str(response.headers.get("Docker-Content-Digest", ""))
                if not DIGEST.fullmatch(digest):
                    raise RuntimeError(f"{url}: no sha256 Docker-Content-Digest ({digest!r})")
                return digest
        except urllib.error.HTTPError as error:
            challenge = error.headers.get("WWW-Authenticate", "")
            if error.code != 401 or "Authorization" in headers or not challenge:
                raise RuntimeError(f"{url}: HTTP {error.code}") from error
            headers["Authorization"] = f"Bearer {_bearer_token(challenge)}"
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise Unreachable(f"{base} unreachable ({getattr(error, 'reason', error)})") from error
    raise RuntimeError(f"{url}: refused the token")


def main(paths: list[str]) -> int:
    files = {Path(p): Path(p).read_text() for p in paths}
    refs = {}
    for path, text in files.items():
        match = ARG.search(text)
        if match is None:
            print(f"pin-images: {path} has no ARG PYTHON_IMAGE=<image> line", file=sys.stderr)
            return 1
        refs[path] = match.group("ref")
    digests: dict[str, str] = {}
    try:
        for ref in sorted(set(refs.values())):
            digests[ref] = resolve(ref)
    except Unreachable as error:
        kept = ", ".join(sorted(set(refs.values())))
        print(f"pin-images: {error}: the Dockerfiles keep {kept}, not pinned by digest")
        return 0
    except (RuntimeError, ValueError) as error:
        print(f"pin-images: {error}", file=sys.stderr)
        return 1
    for path, text in files.items():
        ref = refs[path]
        pinned = f"{ref.split('@', 1)[0]}@{digests[ref]}"
        path.write_text(ARG.sub(f"ARG PYTHON_IMAGE={pinned}", text, count=1))
        print(f"pin-images: {path}: {pinned}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
