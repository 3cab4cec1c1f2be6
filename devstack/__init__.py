"""The developer's stack on this machine: what `make run` starts, and its live dashboard."""
