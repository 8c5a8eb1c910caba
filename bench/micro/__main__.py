"""The micro suite, saved and compared with the last saved run.

    python -m bench.micro [--no-save] [--fail-over PCT] [pytest args ...]

Runs ``bench/micro`` (decode, validate, serialize, rate bucket; compiled and pure-Python twins)
with pytest-benchmark enabled, saves the run under ``bench/results/micro/<machine>/NNNN_*.json``
(``--benchmark-autosave``) and, when an earlier run is saved there, prints the comparison with the
last one (``--benchmark-compare``): every benchmark's min/mean/median side by side, so a
regression is visible at a glance. ``--fail-over PCT`` makes the exit status 1 when a mean got
slower by more than PCT % (``--benchmark-compare-fail=mean:PCT%``), for a pre-merge check on a
quiet machine; by default nothing fails on speed. Runs are comparable only on the same machine
and in the same conditions: the folder is named by machine, and the saved JSON records the CPU,
the commit and whether the tree was dirty.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

MICRO = Path(__file__).resolve().parent
STORAGE = MICRO.parent / "results" / "micro"


def saved_runs(storage: Path = STORAGE) -> list[Path]:
    return sorted(storage.glob("*/[0-9][0-9][0-9][0-9]_*.json"))


def pytest_args(
    save: bool, fail_over: float | None, extra: list[str], storage: Path = STORAGE
) -> list[str]:
    args = [
        str(MICRO),
        "-q",
        "-p",
        "no:cacheprovider",
        "--benchmark-enable",
        "--benchmark-group-by=func",
        f"--benchmark-storage=file://{storage}",
        "--benchmark-columns=min,mean,median,stddev,rounds",
    ]
    if save:
        args.append("--benchmark-autosave")
    if saved_runs(storage):
        args.append("--benchmark-compare")
        if fail_over is not None:
            args.append(f"--benchmark-compare-fail=mean:{fail_over:g}%")
    return args + extra


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.split("\n")[0])
    p.add_argument("--no-save", action="store_true", help="compare only; do not save this run")
    p.add_argument("--fail-over", type=float, default=None, help="fail on a mean slower by PCT %%")
    args, extra = p.parse_known_args(argv)
    if not saved_runs():
        print(f"no saved run in {STORAGE} yet: this run becomes the first", flush=True)
    return int(pytest.main(pytest_args(not args.no_save, args.fail_over, extra)))


if __name__ == "__main__":
    sys.exit(main())
