"""Decode and validate one signal (the engine's input contract, docs/signals.md).

``decode(payload, arrived_ns=0, targets=None, max_qty=MAX_QTY_LOTS) -> Signal`` raises
:class:`engine.model.errors.SignalError` with a ``reason`` that tells the sender what to fix, and
with ``signal_id`` set whenever the id was readable; it never raises anything else for bad input.
``peek_id(payload)`` recovers the id of a signal that failed decode, or ``None``.

Both come from ``engine._fast``: the compiled decoder when it is built and ``TL_ENGINE_PURE`` is
unset, else the pure-Python twin (``engine._fast._py.decode``), with identical behaviour.
"""

from __future__ import annotations

from engine import _fast
from engine._fast._py.decode import MAX_ID_LENGTH, MAX_QTY_LOTS, MAX_SIGNAL_BYTES

__all__ = ["MAX_ID_LENGTH", "MAX_QTY_LOTS", "MAX_SIGNAL_BYTES", "decode", "peek_id"]

decode = _fast.decode_signal
peek_id = _fast.peek_signal_id
