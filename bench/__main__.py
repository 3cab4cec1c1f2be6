"""`python -m bench`: placeholder until the bench scenarios land."""

from __future__ import annotations

import sys


def main() -> int:
    print("bench: no scenarios yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
