"""PNG charts (matplotlib, no display needed); each returns the file name it wrote."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on a CI box or over ssh

import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _save(fig: Figure, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def latency_distribution(series: Mapping[str, Sequence[float]], path: Path, title: str) -> str:
    """Cumulative latency distribution per label, on a log axis (ms to seconds fit on one)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        if not values:
            continue
        ordered = sorted(values)
        fraction = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.step(ordered, fraction, where="post", label=f"{label} (n={len(ordered)})")
    ax.set_xscale("log")
    ax.set_xlabel("response time (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def queue_depth(
    series: Mapping[str, tuple[Sequence[float], Sequence[int]]],
    path: Path,
    title: str,
    arrivals_end: float | None = None,
    in_flight: tuple[Sequence[float], Sequence[int]] | None = None,
) -> str:
    """Messages waiting in the queue over time, one line per run (CloudWatch's chart).

    `in_flight` (received, not yet deleted: the payments running) goes on a second axis.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (t, depth) in series.items():
        ax.plot(t, depth, label=label, drawstyle="steps-post")
    if arrivals_end is not None:
        ax.axvline(arrivals_end, color="grey", linestyle="--", label="arrivals stop")
    ax.set_xlabel("seconds since arrivals started")
    ax.set_ylabel("messages visible (waiting)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if in_flight is not None:
        right = ax.twinx()
        (line,) = right.plot(*in_flight, color="#aaaaaa", drawstyle="steps-post")
        right.set_ylabel("messages in flight (being paid)")
        handles, labels = [*handles, line], [*labels, "in flight (right axis)"]
    ax.legend(handles, labels, loc="upper left")
    return _save(fig, path)


def bars(values: Mapping[str, float], path: Path, title: str, ylabel: str) -> str:
    """One bar per label, its value written on it."""
    fig, ax = plt.subplots(figsize=(5, 4))
    labels = list(values)
    drawn = ax.bar(labels, [values[k] for k in labels], color=["#c44e52", "#4c72b0", "#55a868"])
    ax.bar_label(drawn, fmt="%.2f")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def latency_vs_rate(
    rates: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    path: Path,
    title: str,
    limit_ms: float | None = None,
) -> str:
    """Latency percentiles (log axis) against the offered rate, one line per percentile."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        points = [(r, v) for r, v in zip(rates, values, strict=True) if v is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    if limit_ms is not None:
        ax.axhline(limit_ms, color="grey", linestyle="--", label=f"{limit_ms:g} ms")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(rates), [f"{r:g}" for r in rates])
    ax.set_xlabel("offered orders/s (open loop)")
    ax.set_ylabel("response time (ms, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)
