"""Signal decoding, compiled (twin: engine/_fast/_py/decode.py)."""

from collections.abc import Container

from engine.model.domain import Signal

MAX_QTY_LOTS: float

def decode(
    payload: bytes,
    arrived_ns: int = 0,
    targets: Container[str] | None = None,
    max_qty: float = ...,
) -> Signal: ...
def peek_id(payload: bytes) -> str | None: ...
