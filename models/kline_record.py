"""The strict contract of a ``klines.1h`` record value, and the reason codes of every rejection.

:func:`decode_record` turns the bytes of one Kafka value into a :class:`~models.kline.Kline` or raises
:class:`RecordRejected` with a code from :data:`REASON_CODES` — never anything else, whatever the bytes
(a nesting 2,000 deep, a number of 4,000 digits, UTF-16, a byte-order mark…). What it accepts is exactly
what :meth:`Kline.to_json` writes:

- UTF-8 without a byte-order mark; standard JSON (no ``NaN``/``Infinity``, no repeated key);
- one object holding the contract's fields plus the envelope (``schema_version``, ``source``, and ``x`` which,
  when present, must be ``true``: only closed klines) and nothing else;
- JSON numbers for the numeric fields (no strings), integers where the contract has integers
  (``open_time``, ``close_time``, ``count``); the symbol as written in the settings (upper case);
- finite values in plausible ranges (:data:`PLAUSIBLE_MAX`; prices positive, volumes and counts not
  negative), and the row rules of :func:`models.kline.check_kline`.

The lenient parsers of models/kline.py stay for the exchange's own formats (strings for numbers) and files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from models.errors import KlineParseError
from models.kline import COLUMNS, INTERVAL_MS, SCHEMA_VERSION, Kline, check_kline

#: Every reason a record of ``klines.1h`` can be dead-lettered with: the one list (streaming/dlq.py uses it).
REASON_CODES = (
    # the record as bytes
    "empty",  # no value
    "oversized",  # value over the size cap
    "unsigned",  # signing is on and the record has no signature
    "bad_signature",  # the signature does not verify
    "missing_key",  # the record has no key (a null key)
    "encoding",  # not UTF-8, or UTF-8 with a byte-order mark
    "not_json",  # not standard JSON (or nested too deep to parse)
    "duplicate_field",  # a JSON object repeats a key
    "not_object",  # JSON, but not an object
    # the object against the contract
    "unknown_field",  # a field beyond the contract and the envelope
    "schema_version",
    "missing_field",
    "wrong_type",  # a string for a number, a float for an integer, a bool…
    "not_closed",  # ``x`` is present and not true
    "unknown_symbol",
    "unknown_interval",
    "key_mismatch",  # the record key is not the symbol
    "invalid_kline",  # a row rule of check_kline (prices, high/low, hour boundary, close time…)
    "implausible",  # not finite, or outside the plausible ranges
    "missing_feature",  # a field the traded model's feature spec needs is missing for that symbol
    # the kline against the stream's clock and what it already accepted
    "future",  # closes after the record was written (or after now, live) plus the allowed skew
    "before_start",  # an hour before the stream's first hour
    "late",  # its hour was already decided
    "duplicate",  # the same kline again (harmless re-delivery)
    "conflict",  # a different kline for a (symbol, hour) already accepted: alerted with both versions
    "out_of_range",  # too far ahead of the stream's clock (a clock outlier)
    # failures
    "unparseable",  # judging the record raised something unexpected (the exception type is in the detail)
    "batch_failed",  # its micro-batch failed repeatedly and was set aside (alerted)
)

ENVELOPE_FIELDS = ("schema_version", "source", "x")
CONTRACT_FIELDS = ("symbol", "interval", *COLUMNS)
REQUIRED_FIELDS = ("symbol", "interval", "open_time", "open", "high", "low", "close", "volume")
INTEGER_FIELDS = frozenset({"open_time", "close_time", "count"})
#: Upper bounds no real hourly kline reaches (a price of a billion, 10^15 units traded in an hour…).
PLAUSIBLE_MAX: dict[str, float] = {
    "open": 1e9,
    "high": 1e9,
    "low": 1e9,
    "close": 1e9,
    "volume": 1e15,
    "quote_volume": 1e15,
    "taker_buy_volume": 1e15,
    "taker_buy_quote_volume": 1e15,
    "count": 1e10,
}
#: open_time between 2009-01-01 and 2100-01-01 (UTC, ms).
OPEN_TIME_RANGE = (1_230_768_000_000, 4_102_444_800_000)
_SHOWN = 48


class RecordRejected(KlineParseError):
    """A record value that breaks the contract; ``code`` is one of :data:`REASON_CODES`."""

    def __init__(self, code: str, detail: str) -> None:
        if code not in REASON_CODES:
            raise ValueError(f"unknown reason code {code!r}")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def shown(value: Any) -> str:
    """``repr`` of a value cut to a few dozen characters (details never echo a whole payload)."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise RecordRejected("duplicate_field", f"field {shown(name)} appears twice")
        out[name] = value
    return out


def _no_constants(name: str) -> Any:
    raise RecordRejected("not_json", f"non-standard JSON constant {name}")


def load_object(value: bytes) -> dict[str, Any]:
    """UTF-8 JSON bytes → a dict, strictly (see the module docstring)."""
    if value.startswith(b"\xef\xbb\xbf"):
        raise RecordRejected("encoding", "UTF-8 byte-order mark")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordRejected("encoding", f"not UTF-8 at byte {exc.start}") from None
    try:
        payload = json.loads(text, object_pairs_hook=_no_repeated_keys, parse_constant=_no_constants)
    except RecursionError:
        raise RecordRejected("not_json", "nested too deep") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of too many digits
        raise RecordRejected("not_json", str(exc)[:120]) from None
    if not isinstance(payload, dict):
        raise RecordRejected("not_object", f"a JSON {type(payload).__name__}, not an object")
    return payload


def _number(name: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a string" if isinstance(value, str) else f"a {type(value).__name__}"
        raise RecordRejected("wrong_type", f"{name} is {kind}, not a JSON number: {shown(value)}")
    if name in INTEGER_FIELDS and not isinstance(value, int):
        raise RecordRejected("wrong_type", f"{name} is not an integer: {shown(value)}")
    if isinstance(value, int):
        if name in INTEGER_FIELDS:
            return value
        try:
            value = float(value)
        except OverflowError:
            raise RecordRejected("implausible", f"{name} is too large") from None
    if not math.isfinite(value):
        raise RecordRejected("implausible", f"{name} is not finite")
    return value


def _check_fields(payload: Mapping[str, Any]) -> None:
    unknown = sorted(set(payload) - set(CONTRACT_FIELDS) - set(ENVELOPE_FIELDS))
    if unknown:
        raise RecordRejected("unknown_field", f"fields outside the contract: {shown(unknown)}")
    version = payload.get("schema_version")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise RecordRejected("schema_version", f"schema_version {shown(version)} is not {SCHEMA_VERSION}")
    if "x" in payload and payload["x"] is not True:
        raise RecordRejected("not_closed", f"x is {shown(payload['x'])}: only closed klines are traded")
    missing = [name for name in (*REQUIRED_FIELDS, "source") if payload.get(name) is None]
    if missing:
        raise RecordRejected("missing_field", f"record lacks {', '.join(missing)}")
    for name in ("symbol", "interval", "source"):
        if not isinstance(payload[name], str):
            raise RecordRejected("wrong_type", f"{name} is not a string: {shown(payload[name])}")


def decode_record(value: bytes) -> Kline:
    """The kline of one ``klines.1h`` value; :class:`RecordRejected` (only) when it breaks the contract."""
    payload = load_object(value)
    _check_fields(payload)
    numbers = {name: _number(name, payload[name]) for name in COLUMNS if payload.get(name) is not None}
    kline = Kline(symbol=payload["symbol"], interval=payload["interval"], **numbers)  # type: ignore[arg-type]
    if kline.interval not in INTERVAL_MS:
        raise RecordRejected("unknown_interval", f"{shown(kline.interval)} is not one of {sorted(INTERVAL_MS)}")
    problem = implausible(kline)
    if problem:
        raise RecordRejected("implausible", problem)
    problems = check_kline(kline)
    if problems:
        raise RecordRejected("invalid_kline", "; ".join(problems))
    return kline


def implausible(kline: Kline) -> str | None:
    """Why a kline's values are outside the plausible ranges (None when they are not)."""
    low, high = OPEN_TIME_RANGE
    if not low <= kline.open_time < high:
        return f"open_time {kline.open_time} is outside 2009..2100"
    for name, bound in PLAUSIBLE_MAX.items():
        value = getattr(kline, name)
        if value is None:
            continue
        if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > bound:  # ints of any size
            return f"{name} {shown(value)} is beyond {bound:g}"
    return None


def missing_features(kline: Kline, required: Mapping[str, tuple[str, ...]]) -> str | None:
    """Why ``kline`` cannot feed a model that needs ``required[symbol]`` (optional contract columns)."""
    absent = [name for name in required.get(kline.symbol, ()) if getattr(kline, name) is None]
    if absent:
        return f"{kline.symbol} lacks {', '.join(absent)}, which the traded model's features need"
    return None
