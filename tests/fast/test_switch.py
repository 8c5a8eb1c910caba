"""The implementation switch: compiled by default, twins on TL_ENGINE_PURE=1, loud when required."""

from __future__ import annotations

import os
import subprocess
import sys

import engine._fast as fast

SNIPPET = "import engine._fast as f; print(f.COMPILED); print(f.describe()); f.require_compiled()"


def _run(env_pure: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TL_ENGINE_PURE"}
    if env_pure is not None:
        env["TL_ENGINE_PURE"] = env_pure
    return subprocess.run(
        [sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, check=False
    )


def test_compiled_modules_are_used_by_default() -> None:
    proc = _run(None)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "hot path: compiled (Cython) engine._fast"]


def test_pure_switch_selects_the_twins_and_require_compiled_exits_with_the_fix() -> None:
    proc = _run("1")
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == "False"
    assert "TL_ENGINE_PURE=1" in proc.stdout
    assert "unset TL_ENGINE_PURE" in proc.stderr


def test_package_exports_the_chosen_implementation() -> None:
    mod = fast.TokenBucket.__module__
    expected = "engine._fast.bucket" if fast.COMPILED else "engine._fast._py.bucket"
    assert mod == expected
