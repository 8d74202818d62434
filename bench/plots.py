"""The rehearsal's plots (matplotlib, PNG into docs/): the room over time, and each
endpoint's latency over time. `pip install -e '.[bench]'` brings matplotlib."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def room_over_time(samples: list[dict], title: str, path: Path) -> None:
    """Line length, active turns, admissions per second and seats sold."""
    plt = _pyplot()
    t = [s["t"] for s in samples]
    admissions = [0.0] + [
        (b["admitted"] - a["admitted"]) / max(1e-9, b["t"] - a["t"])
        for a, b in zip(samples, samples[1:], strict=False)
    ]
    panels = [
        ("fans waiting in line", [s["waiting"] for s in samples]),
        ("active turns", [s["active"] for s in samples]),
        ("admissions per second", admissions),
        ("seats sold (held, dashed)", [s["sold"] for s in samples]),
    ]
    figure, axes = plt.subplots(len(panels), 1, figsize=(8, 9), sharex=True)
    for axis, (label, values) in zip(axes, panels, strict=True):
        axis.plot(t, values, linewidth=1.2)
        axis.set_ylabel(label, fontsize=8)
        axis.grid(alpha=0.3)
    axes[-1].plot(t, [s["held"] for s in samples], linestyle="--", linewidth=1)
    axes[-1].set_xlabel("seconds since the run started")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def latency_over_time(
    timeline: list[tuple[float, str, float]], title: str, path: Path, bin_seconds: float = 5.0
) -> None:
    """p50 (solid) and p99 (dotted) per endpoint in bins of `bin_seconds`, log scale."""
    plt = _pyplot()
    binned: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t, name, seconds in timeline:
        binned[name][int(t // bin_seconds)].append(seconds * 1000)
    figure, axis = plt.subplots(figsize=(8, 5))
    for name in sorted(binned):
        bins = sorted(binned[name])
        xs = [b * bin_seconds for b in bins]
        p50 = [sorted(binned[name][b])[len(binned[name][b]) // 2] for b in bins]
        p99 = [
            sorted(binned[name][b])[min(len(binned[name][b]) - 1, int(0.99 * len(binned[name][b])))]
            for b in bins
        ]
        (line,) = axis.plot(xs, p50, label=name, linewidth=1.2)
        axis.plot(xs, p99, linestyle=":", color=line.get_color(), linewidth=1)
    axis.set_yscale("log")
    axis.set_xlabel("seconds since the run started")
    axis.set_ylabel(f"latency, ms (p50 solid, p99 dotted, {bin_seconds:g} s bins)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8, ncol=3)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
