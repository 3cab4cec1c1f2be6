"""`python -m devstack`: `make run`'s launcher (devstack/stack.py)."""

from .stack import main

raise SystemExit(main())
