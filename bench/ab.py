"""A/B of source trees: ``tl-engine bench --quick`` alternated between them, N runs each.

    python -m bench.ab --old REV --new REV [--new REV ...] [--runs 5] [--out DIR]

Each revision is checked out into its own git work tree under ``--out`` and its compiled hot path
is built there; both run on this virtualenv's packages. The runs alternate (old, new, old, new,
...) so that both trees meet the same machine, the same moments of background load and the same
thermal state; each prints its own ``--quick`` report, and this script collects from each run's
JSON the engine share p50/p99 and the engine/floor round-trip ratio, then prints every run and
the medians with their spread (min..max). Nothing is asserted: the figures go to
``bench/RESULTS.md`` by hand, with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURES = ("engine_share_p50_us", "engine_share_p99_us", "engine_floor_rt_ratio_p50")


def _tree(rev: str, root: Path) -> Path:
    """A work tree of ``rev`` with its compiled modules built in place."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    path = root / sha
    if not path.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(path), sha], cwd=REPO, check=True
        )
        subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
            cwd=path,
            check=True,
            capture_output=True,
        )
    return path


def _cli_module(tree: Path) -> str:
    # Before the packages-by-role layout the CLI was engine/cli.py; after it, engine/app/cli.py.
    return "engine.app.cli" if (tree / "engine" / "app" / "cli.py").exists() else "engine.cli"


def _run(tree: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(
        [sys.executable, "-m", _cli_module(tree), "bench", "--quick", "--out", str(out)],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ratios = json.loads((out / "latest.json").read_text())["ratios"]
    return {k: float(ratios[k]) for k in FIGURES}


def _summary(runs: list[dict[str, float]], key: str) -> str:
    values = [r[key] for r in runs]
    return f"{statistics.median(values):8.2f} ({min(values):.2f}..{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    p.add_argument("--old", required=True, help="git revision of the baseline")
    p.add_argument(
        "--new",
        action="append",
        help="git revision to compare (default HEAD); repeat to compare several in one series",
    )
    p.add_argument("--runs", type=int, default=5, help="runs per tree (default 5)")
    p.add_argument("--out", type=Path, default=None, help="work trees and results (default: tmp)")
    args = p.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="tl-ab-"))
    root.mkdir(parents=True, exist_ok=True)
    news = args.new or ["HEAD"]
    trees = {"old": _tree(args.old, root)}
    for j, rev in enumerate(news):
        trees["new" if len(news) == 1 else f"new{j + 1}"] = _tree(rev, root)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for i in range(args.runs):
        for name in trees:
            figures = _run(trees[name], root / f"{name}-{i}")
            runs[name].append(figures)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
            print(f"run {i + 1} {name} ({trees[name].name}): {shown}", flush=True)
    print(f"\nmedian (min..max) of {args.runs} alternating runs each")
    print(f"{'':6}" + "".join(f"{k:>28}" for k in FIGURES))
    for name in trees:
        print(f"{name:6}" + "".join(f"{_summary(runs[name], k):>28}" for k in FIGURES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
