"""The compiled hot path: signal decoding, order pre-validation, request serialization, rate-limit
token buckets.

Import from here, not from the submodules: this package picks the compiled extensions when they are
built and ``TL_ENGINE_PURE`` is unset or ``0``, and the pure-Python twins in ``engine._fast._py``
otherwise (identical behaviour, checked by differential tests). ``COMPILED`` says which;
``describe()`` is the line the engine prints at start-up; ``require_compiled()`` fails loudly when a
deployment (or scripts/test.sh) must not run on the twins.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from engine._fast.codes import GRID_TOLERANCE, MAX_TAG_LENGTH, GuardCode, RejectCode

__all__ = [
    "COMPILED",
    "GRID_TOLERANCE",
    "MAX_TAG_LENGTH",
    "READY",
    "GuardCode",
    "GuardState",
    "RejectCode",
    "TokenBucket",
    "check_guard",
    "check_order",
    "close_position_body",
    "decode_signal",
    "describe",
    "format_number",
    "lots_for_risk",
    "modify_order_body",
    "modify_position_body",
    "order_post_head",
    "peek_signal_id",
    "place_order_body",
    "reject_reason",
    "request_head",
    "require_compiled",
    "with_body",
    "worst_loss",
]

PURE_REQUESTED: bool = os.environ.get("TL_ENGINE_PURE", "").strip() not in ("", "0")
_why_pure: str

if TYPE_CHECKING:
    from engine._fast.bucket import READY, TokenBucket
    from engine._fast.decode import decode as decode_signal
    from engine._fast.decode import peek_id as peek_signal_id
    from engine._fast.guards import GuardState, check_guard, lots_for_risk, worst_loss
    from engine._fast.serialize import (
        close_position_body,
        format_number,
        modify_order_body,
        modify_position_body,
        order_post_head,
        place_order_body,
        request_head,
        with_body,
    )
    from engine._fast.validate import check_order, reject_reason

    COMPILED: bool
else:
    try:
        if PURE_REQUESTED:
            raise ImportError("TL_ENGINE_PURE is set")
        _bucket = importlib.import_module("engine._fast.bucket")
        _decode = importlib.import_module("engine._fast.decode")
        _guards = importlib.import_module("engine._fast.guards")

        _serialize = importlib.import_module("engine._fast.serialize")
        _validate = importlib.import_module("engine._fast.validate")

        COMPILED = True
        _why_pure = ""
    except ImportError as exc:
        from engine._fast._py import bucket as _bucket
        from engine._fast._py import decode as _decode
        from engine._fast._py import guards as _guards
        from engine._fast._py import serialize as _serialize
        from engine._fast._py import validate as _validate

        COMPILED = False
        _why_pure = str(exc)

    TokenBucket = _bucket.TokenBucket
    READY = _bucket.READY  # a completed awaitable (the rate gate's fast path)
    # Not named ``decode``: that is the submodule's name in this package.
    decode_signal = _decode.decode
    peek_signal_id = _decode.peek_id
    check_order = _validate.check_order
    GuardState = _guards.GuardState
    check_guard = _guards.check_guard
    lots_for_risk = _guards.lots_for_risk
    worst_loss = _guards.worst_loss
    reject_reason = _validate.reject_reason
    place_order_body = _serialize.place_order_body
    modify_order_body = _serialize.modify_order_body
    modify_position_body = _serialize.modify_position_body
    close_position_body = _serialize.close_position_body
    format_number = _serialize.format_number
    request_head = _serialize.request_head
    order_post_head = _serialize.order_post_head
    with_body = _serialize.with_body


def describe() -> str:
    """One line for the start-up log: which implementation of the hot path is in use."""
    if COMPILED:
        return "hot path: compiled (Cython) engine._fast"
    if PURE_REQUESTED:
        return "hot path: pure-Python twins (TL_ENGINE_PURE=1)"
    return (
        "hot path: pure-Python twins, the compiled modules are not built "
        f"({_why_pure}); build them with: pip install -e . --no-deps --no-build-isolation"
    )


def require_compiled() -> None:
    """Exit with a clear message unless the compiled modules are in use."""
    if not COMPILED:
        raise SystemExit(
            f"engine._fast: {describe()}. The compiled hot path is required here; unset "
            "TL_ENGINE_PURE and build it with `pip install -e . --no-deps --no-build-isolation`."
        )
