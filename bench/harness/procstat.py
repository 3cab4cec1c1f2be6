"""A process's CPU time and memory, read with psutil: the one reader every scenario uses."""

from __future__ import annotations

import psutil


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far; None once it is gone.

    A zombie (exited, not yet reaped) still answers, so a reader can take a process's total
    after it exits and before it is reaped.
    """
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB; None once it is gone."""
    try:
        return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)
    except psutil.Error:
        return None


def thread_count(pid: int) -> int | None:
    """Threads of a process; None once it is gone."""
    try:
        return int(psutil.Process(pid).num_threads())
    except psutil.Error:
        return None


def live_cpu_seconds(pid: int) -> float:
    """cpu_seconds() of a process that must still exist (ProcessLookupError if it does not)."""
    got = cpu_seconds(pid)
    if got is None:
        raise ProcessLookupError(f"process {pid} is gone")
    return got
