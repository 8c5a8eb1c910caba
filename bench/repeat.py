"""``tl-engine bench --quick`` N times in a row on this tree, and each figure's spread.

    python -m bench.repeat [--runs 5] [--out DIR] [--variant NAME="ARGS" ...] [-- extra args]

With ``--variant`` (repeatable), the runs alternate between the variants (A, B, A, B, ...), each
with its own extra ``tl-engine bench`` arguments (e.g. ``--variant plain= --variant
frozen="--gc-freeze"``): an A/B of harness settings on one tree, every variant meeting the same
moments of the machine. Each run is its own process (a fresh sandbox, engine and interpreter),
as a user would run it.
From each run's JSON it collects the engine/floor and adapter/floor round-trip ratios (p50, from
the interleaved series), the engine share p50/p99 and the capacities, then prints every run and,
per figure, the median, min..max and the largest distance from the median in % of it (the
"within +-10 % of the median" check of the latency issue). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURES = (
    "engine_floor_rt_ratio_p50",
    "adapter_floor_rt_ratio_p50",
    "engine_share_p50_us",
    "engine_share_p99_us",
    "capacity_sandbox_orders_per_s",
    "capacity_null_venue_orders_per_s",
)


def spread_line(name: str, values: list[float]) -> str:
    med = statistics.median(values)
    worst = max(abs(v - med) for v in values)
    pct = 100.0 * worst / med if med else float("inf")
    return f"{name:<36} median {med:10.2f}  ({min(values):.2f}..{max(values):.2f}, +-{pct:.1f} %)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.repeat", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5, help="runs in a row (default 5)")
    p.add_argument("--out", type=Path, default=None, help="where each run's JSON goes (tmp)")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help='NAME="ARGS": alternate runs between variants (repeatable)',
    )
    p.add_argument("extra", nargs="*", help="more arguments for tl-engine bench (after --)")
    args = p.parse_args(argv)
    variants: dict[str, list[str]] = {}
    for v in args.variant:
        name, sep, rest = v.partition("=")
        if not sep or not name:
            print(f'--variant {v!r}: expected NAME="ARGS" (ARGS may be empty)', file=sys.stderr)
            return 2
        variants[name] = shlex.split(rest)
    if not variants:
        variants[""] = []
    if args.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    root = args.out or Path(tempfile.mkdtemp(prefix="tl-repeat-"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for i in range(args.runs):
        for name, vargs in variants.items():
            out = root / f"run-{i + 1}{'-' + name if name else ''}"
            command = [sys.executable, "-m", "engine.app.cli", "bench", "--quick"]
            done = subprocess.run(
                [*command, "--out", str(out), *vargs, *args.extra],
                cwd=REPO,
                env=env,
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            if done.returncode != 0:  # reported and left out; the spread says how many ran
                tail = done.stderr.strip().splitlines()[-3:]
                print(f"run {i + 1} {name}: FAILED (exit {done.returncode}): {tail}", flush=True)
                continue
            data = json.loads((out / "latest.json").read_text())
            ratios = data["ratios"]
            if data.get("saturated_0ms"):
                print(f"run {i + 1} {name}: SATURATED (floor p50 > 10 ms at 0 ms), left out")
                continue
            figures = {k: float(ratios[k]) for k in FIGURES if k in ratios}
            runs[name].append(figures)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
            print(f"run {i + 1}{' ' + name if name else ''}: {shown}", flush=True)
    for name in variants:
        title = f"variant {name}: " if name else ""
        print(
            f"\n{title}{len(runs[name])} runs, median (min..max, largest distance from the median)"
        )
        for k in FIGURES:
            values = [r[k] for r in runs[name] if k in r]
            if values:
                print(spread_line(k, values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
