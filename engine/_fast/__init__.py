"""The compiled hot path. Placeholder until the Cython modules land."""


def require_compiled() -> None:
    raise SystemExit("engine._fast is not built yet")
