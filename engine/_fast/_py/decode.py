"""Decode and validate one signal (the engine's input contract, docs/signals.md): the pure-Python
twin of ``engine/_fast/decode.pyx`` and the reference its differential tests compare against.

``decode`` turns bytes into an :class:`engine.model.domain.Signal` or raises :class:`SignalError`
whose ``reason`` tells the sender what to fix. It never raises anything else for bad input, so a
source loop can reject a signal and carry on. The id is recovered whenever the JSON is readable, so
even a rejected signal produces an outcome carrying its id. Import it from
``engine.execution.signals``, which picks the compiled decoder when it is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container
from typing import Any

import orjson

from engine.model.domain import Action, OrderType, Priority, ProtectionType, Side, Signal
from engine.model.errors import SignalError

MAX_SIGNAL_BYTES = 16 * 1024
MAX_ID_LENGTH = 128
MAX_QTY_LOTS = 1_000.0  # a fat-finger guard; the venue's maxLot is checked again in pre-validation

# ts magnitudes: epoch ms is ~1.7e12 today, epoch ns ~1.7e18. Anything else is a unit mistake.
_MS_RANGE = (10**11, 10**14)
_NS_RANGE = (10**17, 10**20)

_KNOWN_FIELDS = frozenset(
    {
        "id", "ts", "account", "action", "symbol", "instrument_id", "side", "type", "qty",
        "price", "stop_price", "stop_loss", "take_profit", "sl_type", "tp_type",
        "trailing_offset", "order_id", "position_id", "ref", "priority", "risk_pct",
        "risk_amount",
    }
)  # fmt: skip

_PRIORITY_BY_NAME = {p.name.lower(): p for p in Priority}


def decode(
    payload: bytes,
    arrived_ns: int = 0,
    targets: Container[str] | None = None,
    max_qty: float = MAX_QTY_LOTS,
) -> Signal:
    """Decode ``payload`` into a validated Signal.

    ``targets`` holds the account aliases and group names the config knows; ``None`` skips that
    check (used by tools that only want the shape checked).
    """
    if len(payload) > MAX_SIGNAL_BYTES:
        raise SignalError(
            f"signal is {len(payload)} bytes, over the {MAX_SIGNAL_BYTES // 1024} KiB limit: "
            "send one signal per message"
        )
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise SignalError(f"signal is not valid JSON ({exc.msg} at byte {exc.pos})") from None
    if not isinstance(obj, dict):
        raise SignalError(f"signal must be a JSON object, got {type(obj).__name__}")
    signal_id = _signal_id(obj)
    try:
        return _build(obj, signal_id, arrived_ns, targets, max_qty, payload)
    except SignalError as exc:
        exc.signal_id = signal_id
        raise


def peek_id(payload: bytes) -> str | None:
    """The signal's id if it can be read at all (for rejecting a signal that failed decode)."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
            return value
    return None


def _signal_id(obj: dict[str, Any]) -> str:
    value = obj.get("id")
    if value is None:
        raise SignalError("missing required field 'id' (a unique string from the generator)")
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise SignalError(f"'id' must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    return value


def _build(
    obj: dict[str, Any],
    signal_id: str,
    arrived_ns: int,
    targets: Container[str] | None,
    max_qty: float,
    payload: bytes,
) -> Signal:
    unknown = obj.keys() - _KNOWN_FIELDS
    if unknown:
        raise SignalError(
            f"unknown field(s) {', '.join(sorted(unknown))}: check the spelling against "
            "docs/signals.md"
        )
    account = _required_str(obj, "account")
    if targets is not None and account not in targets:
        raise SignalError(
            f"account {account!r} is neither an account alias nor a group in the config"
        )
    action = _enum(obj, "action", Action.parse, required=True)
    assert action is not None
    sig = Signal(id=signal_id, account=account, action=action, arrived_ns=arrived_ns, raw=payload)
    sig.ts_ns = _ts_ns(obj.get("ts"))
    sig.symbol = _opt_str(obj, "symbol")
    sig.instrument_id = _opt_int(obj, "instrument_id")
    sig.side = _enum(obj, "side", Side.parse)
    sig.type = _enum(obj, "type", OrderType.parse)
    sig.qty = _opt_number(obj, "qty")
    sig.price = _opt_number(obj, "price")
    sig.stop_price = _opt_number(obj, "stop_price")
    sig.stop_loss = _opt_number(obj, "stop_loss")
    sig.take_profit = _opt_number(obj, "take_profit")
    sig.stop_loss_type = _enum(obj, "sl_type", ProtectionType.parse)
    sig.take_profit_type = _enum(obj, "tp_type", ProtectionType.parse)
    sig.trailing_offset = _opt_number(obj, "trailing_offset")
    sig.order_id = _opt_venue_id(obj, "order_id")
    sig.position_id = _opt_venue_id(obj, "position_id")
    sig.ref = _opt_str(obj, "ref")
    sig.priority = _priority(obj.get("priority"))
    sig.risk_pct = _opt_number(obj, "risk_pct")
    sig.risk_amount = _opt_number(obj, "risk_amount")
    _check_numbers(sig, max_qty)
    _CHECKS[action](sig)
    return sig


# --- field readers -------------------------------------------------------------------------------


def _required_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        raise SignalError(f"missing required field {key!r}")
    if not isinstance(value, str) or not value:
        raise SignalError(f"{key!r} must be a non-empty string")
    return value


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SignalError(f"{key!r} must be a non-empty string when given")
    return value


def _opt_int(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SignalError(f"{key!r} must be a positive integer (the TradeLocker tradable id)")
    return value


def _opt_venue_id(obj: dict[str, Any], key: str) -> str | None:
    """Venue ids are 64-bit integers: accept a digit string or an int, keep them as strings."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return value
    if isinstance(value, str) and value.startswith("emu-") and len(value) <= 40:
        return value  # an engine-held (emulated stop-limit) order
    raise SignalError(
        f"{key!r} must be the venue's numeric id as a string of digits (or an engine emu- id)"
    )


def _opt_number(obj: dict[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignalError(f"{key!r} must be a JSON number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise SignalError(f"{key!r} must be a finite number")
    return number


def _enum(
    obj: dict[str, Any], key: str, parse: Callable[[str], Any], required: bool = False
) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise SignalError(f"missing required field {key!r}")
        return None
    if not isinstance(value, str):
        raise SignalError(f"{key!r} must be a string")
    try:
        return parse(value)
    except ValueError as exc:
        raise SignalError(f"{key!r}: {exc}") from None


def _ts_ns(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignalError("'ts' must be an epoch time in milliseconds or nanoseconds (a number)")
    if isinstance(value, float) and not math.isfinite(value):
        raise SignalError("'ts' must be a finite number")
    if _MS_RANGE[0] <= value < _MS_RANGE[1]:
        return int(value * 1_000_000)
    if _NS_RANGE[0] <= value < _NS_RANGE[1]:
        return int(value)
    raise SignalError(
        f"'ts' {value!r} is neither epoch milliseconds (~1.7e12) nor epoch nanoseconds (~1.7e18): "
        "seconds and microseconds are not accepted"
    )


def _priority(value: object) -> Priority | None:
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in _PRIORITY_BY_NAME:
        return _PRIORITY_BY_NAME[value.lower()]
    names = ", ".join(_PRIORITY_BY_NAME)
    raise SignalError(f"'priority' must be one of {names}; got {value!r}")


def _check_numbers(sig: Signal, max_qty: float) -> None:
    if sig.qty is not None and not 0 < sig.qty <= max_qty:
        raise SignalError(
            f"'qty' must be more than 0 and at most {max_qty:g} lots, got {sig.qty:g}"
        )
    for key, value in (("price", sig.price), ("stop_price", sig.stop_price)):
        if value is not None and value <= 0:
            raise SignalError(f"{key!r} must be a positive price, got {value:g}")
    if sig.trailing_offset is not None and sig.trailing_offset <= 0:
        raise SignalError("'trailing_offset' must be a positive distance in pips")
    if sig.stop_loss is not None and sig.stop_loss <= 0:
        raise SignalError("'stop_loss' must be a positive price or offset")
    if sig.take_profit is not None and sig.take_profit <= 0:
        raise SignalError("'take_profit' must be a positive price or offset")
    if sig.risk_pct is not None and not 0 < sig.risk_pct <= 100:
        raise SignalError(
            f"'risk_pct' must be a percentage of equity above 0 and at most 100, got "
            f"{sig.risk_pct:g}"
        )
    if sig.risk_amount is not None and sig.risk_amount <= 0:
        raise SignalError(
            f"'risk_amount' must be a positive amount of the account currency, got "
            f"{sig.risk_amount:g}"
        )
    if (sig.risk_pct is not None or sig.risk_amount is not None) and sig.action is not Action.PLACE:
        raise SignalError("'risk_pct' and 'risk_amount' size a place signal only")


# --- per-action requirements ---------------------------------------------------------------------


def _need_instrument(sig: Signal) -> None:
    if sig.symbol is None and sig.instrument_id is None:
        raise SignalError(f"{sig.action.wire} needs 'symbol' or 'instrument_id'")


def _need_protection_rules(sig: Signal) -> None:
    if sig.take_profit_type is ProtectionType.TRAILING_OFFSET:
        raise SignalError("'tp_type' cannot be trailingOffset: use absolute or offset")
    trailing = sig.stop_loss_type is ProtectionType.TRAILING_OFFSET
    if trailing and sig.trailing_offset is None:
        raise SignalError("sl_type trailingOffset needs 'trailing_offset' (pips)")
    if sig.stop_loss_type is not None and sig.stop_loss is None and not trailing:
        raise SignalError("'sl_type' given without 'stop_loss'")
    if sig.take_profit_type is not None and sig.take_profit is None:
        raise SignalError("'tp_type' given without 'take_profit'")


def _need_target(sig: Signal, key: str) -> None:
    present = sig.order_id if key == "order_id" else sig.position_id
    if present is None and sig.ref is None:
        raise SignalError(
            f"{sig.action.wire} needs {key!r} (venue id) or 'ref' (the id of the signal that "
            "created it)"
        )


def _check_place(sig: Signal) -> None:
    _need_instrument(sig)
    if sig.side is None:
        raise SignalError("place needs 'side' (buy or sell)")
    if sig.type is None:
        raise SignalError("place needs 'type' (market, limit, stop or stop_limit)")
    risk = sig.risk_pct is not None or sig.risk_amount is not None
    if sig.risk_pct is not None and sig.risk_amount is not None:
        raise SignalError("give 'risk_pct' or 'risk_amount', not both")
    if sig.qty is not None and risk:
        raise SignalError("give 'qty' (lots) or a risk ('risk_pct' or 'risk_amount'), not both")
    if sig.qty is None and not risk:
        raise SignalError("place needs 'qty' (lots)")
    if risk and (sig.stop_loss is None or sig.stop_loss_type is ProtectionType.TRAILING_OFFSET):
        raise SignalError(
            "sizing by risk needs an absolute or offset 'stop_loss': the loss is measured to it"
        )
    if sig.type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and sig.price is None:
        raise SignalError(f"a {sig.type.wire} order needs 'price' (the limit price)")
    if sig.type in (OrderType.STOP, OrderType.STOP_LIMIT) and sig.stop_price is None:
        raise SignalError(f"a {sig.type.wire} order needs 'stop_price' (the trigger price)")
    if sig.type is OrderType.MARKET and (sig.price is not None or sig.stop_price is not None):
        raise SignalError("a market order takes no 'price' or 'stop_price': use type limit or stop")
    _need_protection_rules(sig)


def _check_modify(sig: Signal) -> None:
    _need_target(sig, "order_id")
    if (
        sig.price is None
        and sig.qty is None
        and sig.stop_price is None
        and sig.stop_loss is None
        and sig.take_profit is None
        and sig.trailing_offset is None
    ):
        raise SignalError(
            "modify changes nothing: give price, qty, stop_price, stop_loss or take_profit"
        )
    _need_protection_rules(sig)


def _check_cancel(sig: Signal) -> None:
    _need_target(sig, "order_id")


def _check_modify_position(sig: Signal) -> None:
    _need_target(sig, "position_id")
    if sig.stop_loss is None and sig.take_profit is None and sig.trailing_offset is None:
        raise SignalError("modify_position changes nothing: give stop_loss and/or take_profit")
    _need_protection_rules(sig)


def _check_close(sig: Signal) -> None:
    _need_target(sig, "position_id")  # qty optional: absent closes the whole position


def _check_reverse(sig: Signal) -> None:
    _need_target(sig, "position_id")
    if sig.qty is not None:
        raise SignalError("reverse takes no 'qty': it closes the position and opens the opposite")


def _check_bulk(sig: Signal) -> None:
    """cancel_all / close_all: an optional instrument narrows them."""


_CHECKS: dict[Action, Callable[[Signal], None]] = {
    Action.PLACE: _check_place,
    Action.MODIFY: _check_modify,
    Action.CANCEL: _check_cancel,
    Action.CANCEL_ALL: _check_bulk,
    Action.MODIFY_POSITION: _check_modify_position,
    Action.CLOSE: _check_close,
    Action.REVERSE: _check_reverse,
    Action.CLOSE_ALL: _check_bulk,
}
