"""The compiled signal decoder and its pure-Python twin must answer every payload the same way:
an equal Signal (field by field, types included), or a SignalError with the same reason and
signal_id. Payloads are built as JSON text so that tokens orjson itself refuses or bends (NaN,
Infinity, 1e400, integers past 64 bits) reach both decoders too."""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._fast._py import decode as py_decode
from engine.model.domain import Action, Signal
from engine.model.errors import SignalError

# Imported by name so a missing build fails these tests instead of testing the twin twice.
c_decode: ModuleType = importlib.import_module("engine._fast.decode")

SETTINGS = settings(max_examples=1500, deadline=None)
TARGETS = frozenset({"acc1", "acc2", "grp"})
FIELDS = [f.name for f in dataclasses.fields(Signal)]

# JSON text that orjson.dumps would never write, each a trap for one code path.
RAW_TOKENS = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "-0.0", "0", "0.0", "1e-320",
    "18446744073709551615", "18446744073709551616", "-9223372036854775809",
    "100000000000000000000", "99999999999999999999", "true", "false", "null", "[]", "{}",
    "[1]", '{"a": 1}',
]  # fmt: skip


def _json(value: object) -> st.SearchStrategy[str]:
    return st.just(orjson.dumps(value).decode())


def _encoded(values: st.SearchStrategy[object]) -> st.SearchStrategy[str]:
    return values.flatmap(_json)


JUNK: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(RAW_TOKENS),
    _encoded(st.integers(-(2**63), 2**64 - 1)),
    _encoded(st.floats(allow_nan=False, allow_infinity=False)),
    _encoded(st.text(max_size=6)),
    _encoded(st.booleans()),
)


def _mostly(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``good`` eleven times in twelve, so most signals get past their first field."""
    return st.integers(0, 11).flatmap(lambda n: bad if n == 0 else good)


def _words(*words: str) -> st.SearchStrategy[str]:
    return _encoded(st.sampled_from(list(words)))


NUMBER = _mostly(
    st.one_of(
        _encoded(st.floats(0.001, 2000, allow_nan=False)),
        _encoded(st.integers(1, 2000)),
        _encoded(st.sampled_from([0.01, 0.5, 1, 1000, 1000.0, 1000.0000001, 1e-9, 1.08123])),
    ),
    st.one_of(_encoded(st.floats(-10, 0)), _encoded(st.integers(-5, 0)), _words("-0.0", "0"), JUNK),
)
TS = _mostly(
    st.one_of(
        _encoded(st.integers(10**11 - 2, 10**14 + 2)),
        _encoded(st.integers(10**17 - 2, 2**64 - 1)),
        _encoded(st.floats(1e11, 1e20, allow_nan=False)),
        _encoded(
            st.sampled_from(
                [
                    10**11, 10**14 - 1, 10**14, 10**17 - 1, 10**17, 9_223_372_036_854,
                    9_223_372_036_855, 9_223_372_036_854_775_807, 9_223_372_036_854_775_808,
                    1e11, 99_999_999_999_999.99, 1e14, 1e17, 9.99e19, 1e20, 1_700_000_000_123,
                    1_700_000_000_123.5, 1.7e18, 1_700_000_000_123_456_789,
                ]
            )
        ),
    ),
    st.one_of(
        _encoded(st.integers(-(10**12), 10**11)),
        _encoded(st.floats(-1e21, 1e21, allow_nan=False)),
        _words("1700000000", "1700000000123456", "100000000000000000000"),
        JUNK,
    ),
)  # fmt: skip

# Long s and dotless i upper-case to S and I: the twin's parser accepts these spellings, so the
# compiled exact-spelling lookup must fall back to it rather than refuse them.
ACTIONS = [a.wire for a in Action] + [a.name for a in Action]
ACTIONS += ["Place", "clo\u017fe", "mod\u0131fy", "x"]
VENUE_ID = _mostly(
    st.one_of(
        _encoded(st.integers(1, 2**64 - 1)),
        _encoded(st.from_regex(r"[0-9]{1,20}", fullmatch=True)),
        _encoded(st.from_regex(r"emu-[a-z0-9]{0,36}", fullmatch=True)),
    ),
    st.one_of(
        _encoded(st.integers(-3, 0)),
        _encoded(st.from_regex(r"[0-9]{21,22}|emu-[a-z0-9]{37,40}", fullmatch=True)),
        _words("", "²³", "١٢٣", "12a", "emu", "EMU-1", "-1", "1.5", " 1"),
        JUNK,
    ),
)
TEXT = _mostly(_encoded(st.text(min_size=1, max_size=8)), st.one_of(_words(""), JUNK))

FIELD_VALUES: dict[str, st.SearchStrategy[str]] = {
    "id": _mostly(
        st.one_of(_encoded(st.text(min_size=1, max_size=10)), _words("x" * 128, "é" * 128)),
        st.one_of(_words("", "x" * 129, "é" * 129), JUNK),
    ),
    "ts": TS,
    "account": _mostly(_words("acc1", "acc2", "grp"), st.one_of(_words("nope", ""), JUNK)),
    "action": _mostly(_words(*ACTIONS), JUNK),
    "symbol": TEXT,
    "instrument_id": _mostly(
        _encoded(st.integers(1, 2**64 - 1)), st.one_of(_encoded(st.integers(-3, 0)), JUNK)
    ),
    "side": _mostly(
        _words("buy", "sell", "BUY", "Sell"), st.one_of(_words("hold", "\u017fell"), JUNK)
    ),
    "type": _mostly(
        _words("market", "limit", "stop", "stop_limit", "stop-limit", "STOP-LIMIT", "Market"),
        st.one_of(_words("iceberg", "stop limit"), JUNK),
    ),
    "qty": NUMBER,
    "price": NUMBER,
    "stop_price": NUMBER,
    "stop_loss": NUMBER,
    "take_profit": NUMBER,
    "sl_type": _mostly(
        _words("absolute", "offset", "trailingOffset", "trailing_offset", "trailing", "OFFSET"),
        st.one_of(_words("Trailing-Offset", "percent"), JUNK),
    ),
    "tp_type": _mostly(
        _words("absolute", "offset", "ABSOLUTE"), st.one_of(_words("trailingOffset", "pips"), JUNK)
    ),
    "trailing_offset": NUMBER,
    "risk_pct": NUMBER,
    "risk_amount": NUMBER,
    "order_id": VENUE_ID,
    "position_id": VENUE_ID,
    "ref": TEXT,
    "priority": _mostly(
        _words("cancel", "market", "close", "modify", "pending", "query", "MARKET"),
        st.one_of(_words("hi", "Ḿarket"), JUNK),
    ),
}  # fmt: skip
UNKNOWN_KEYS = ["qtty", "Side", "stopLoss", "comment", "", "ID", "ts_ms"]

# What each action needs to be valid, so a useful share of the random signals get all the way
# through to the per-action checks instead of stopping at the first junk field.
NEEDS: dict[str, list[str]] = {
    "place": ["symbol", "side", "type", "qty"],
    "modify": ["order_id", "price"],
    "cancel": ["order_id"],
    "cancel_all": [],
    "modify_position": ["position_id", "stop_loss"],
    "close": ["position_id"],
    "reverse": ["ref"],
    "close_all": [],
}


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """A JSON object of signal fields, each present or not, valid-looking or junk."""
    fields: dict[str, str] = {}
    action = draw(st.sampled_from(sorted(NEEDS)))
    fields["action"] = orjson.dumps(action).decode()
    for key in ("id", "account", *NEEDS[action]):
        fields[key] = draw(FIELD_VALUES[key])
    for key in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=8, unique=True)):
        fields[key] = draw(FIELD_VALUES[key])
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.sampled_from(UNKNOWN_KEYS))] = draw(JUNK)
    if draw(st.integers(0, 5)) == 0:
        del fields[draw(st.sampled_from(sorted(fields)))]  # a missing required field
    items = list(fields.items())
    if draw(st.booleans()):
        items = draw(st.permutations(items))
    body = ",".join(f"{orjson.dumps(k).decode()}:{v}" for k, v in items)
    return ("{" + body + "}").encode()


def _valid_places() -> st.SearchStrategy[bytes]:
    base = st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=20),
            "account": st.sampled_from(sorted(TARGETS)),
            "action": st.just("place"),
            "symbol": st.sampled_from(["EURUSD", "US30"]),
            "side": st.sampled_from(["buy", "sell"]),
            "type": st.just("market"),
            "qty": st.floats(0.01, 1000),
            "ts": st.integers(1_600_000_000_000, 1_900_000_000_000),
        },
        optional={
            "stop_loss": st.floats(0.001, 1e6),
            "take_profit": st.integers(1, 10**6),
            "priority": st.sampled_from(["market", "cancel"]),
        },
    )
    return base.map(orjson.dumps)


def _outcome(module: ModuleType, payload: bytes, **kwargs: object) -> tuple[object, ...]:
    try:
        sig = module.decode(payload, **kwargs)
    except SignalError as exc:
        return ("error", exc.reason, exc.signal_id, exc.args)
    assert type(sig) is Signal
    return ("ok", tuple((name, type(v), v) for name in FIELDS for v in [getattr(sig, name)]))


def _same(payload: bytes, **kwargs: object) -> tuple[object, ...]:
    compiled = _outcome(c_decode, payload, **kwargs)
    assert compiled == _outcome(py_decode, payload, **kwargs)
    return compiled


@SETTINGS
@given(payloads(), st.sampled_from([None, TARGETS]), st.sampled_from([1000.0, 50, 0.5]))
def test_compiled_and_pure_decode_every_signal_the_same(
    payload: bytes, targets: frozenset[str] | None, max_qty: float
) -> None:
    _same(payload, arrived_ns=12345, targets=targets, max_qty=max_qty)


@SETTINGS
@given(_valid_places(), st.integers(0, 2**63 - 1))
def test_valid_market_places_decode_to_equal_signals(payload: bytes, arrived_ns: int) -> None:
    outcome = _same(payload, arrived_ns=arrived_ns, targets=TARGETS)
    assert outcome[0] == "ok", outcome


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.sampled_from([b"", b"[]", b"1", b'"x"', b"null", b"{", b"{}"]))
def test_bytes_that_are_not_a_signal_get_the_same_reason(payload: bytes) -> None:
    outcome = _same(payload)
    assert outcome[0] == "error"
    assert c_decode.peek_id(payload) == py_decode.peek_id(payload)


@settings(max_examples=200, deadline=None)
@given(payloads())
def test_peek_id_agrees(payload: bytes) -> None:
    assert c_decode.peek_id(payload) == py_decode.peek_id(payload)


def test_oversized_signal_is_refused_by_both_before_parsing() -> None:
    limit = py_decode.MAX_SIGNAL_BYTES
    padded = b'{"id": "s1", "account": "acc1", "action": "cancel_all"}'.ljust(limit + 1)
    outcome = _same(padded)
    assert outcome[0] == "error" and "over the 16 KiB limit" in str(outcome[1])
    assert _same(padded[:limit])[0] == "ok"  # whitespace padding up to the limit is still fine
