"""The percentile-distribution plot (PNG) written by every benchmark run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from engine.observability.metrics import LatencyHistogram

_PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0)


def write_percentile_plot(series: Mapping[str, LatencyHistogram], path: Path, title: str) -> Path:
    """One line per series: latency (ms, log scale) against percentile (on a 1/(1-p) axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    xs = [1 / (1 - p / 100) if p < 100 else 1e5 for p in _PERCENTILES]
    for name, hist in series.items():
        if hist.hist.get_total_count() == 0:
            continue
        ys = [
            (hist.hist.get_max_value() if p >= 100 else hist.hist.get_value_at_percentile(p)) / 1e6
            for p in _PERCENTILES
        ]
        ax.plot(xs, ys, marker="o", label=f"{name} (n={hist.hist.get_total_count()})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"p{p:g}" if p < 100 else "max" for p in _PERCENTILES])
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_xlabel("percentile")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
