"""Build of the compiled hot path (engine/_fast). Metadata lives in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - build requirement in pyproject.toml
    raise SystemExit("Cython is required to build engine._fast (pip install cython)") from exc

HERE = Path(__file__).parent
PYX = sorted((HERE / "engine" / "_fast").glob("*.pyx"))

extensions = [
    Extension(
        f"engine._fast.{p.stem}",
        [str(p.relative_to(HERE))],
        extra_compile_args=["-O3"],
    )
    for p in PYX
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
