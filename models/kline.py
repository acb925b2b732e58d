"""The kline contract (shared/DESIGN.md §4.1), parsed once at the edge.

A kline is keyed by ``(symbol, interval, open_time)``; times are UTC epoch milliseconds. The event
time of a kline is its close time; only closed klines travel past the ingestor. The last four
columns may be missing in historical sources: they are ``None`` / NaN, never invented.

Binance REST arrays, websocket messages and Kafka JSON all become :class:`Kline` here, and nothing
deeper handles raw strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from models.errors import KlineParseError

SCHEMA_VERSION = 1
HOUR_MS = 3_600_000
INTERVAL_MS = {"1h": HOUR_MS}

#: Columns of a kline in contract order (the key ``symbol``/``interval`` is carried beside them).
COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
#: Columns that some historical sources lack; empty means unknown, not zero.
OPTIONAL_COLUMNS: tuple[str, ...] = ("quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

#: pandas dtypes of a kline frame (nullable where a source may lack the value).
FRAME_DTYPES: dict[str, str] = {
    "symbol": "string",
    "interval": "string",
    "open_time": "int64",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",
    "close_time": "Int64",
    "quote_volume": "float64",
    "count": "Int64",
    "taker_buy_volume": "float64",
    "taker_buy_quote_volume": "float64",
}
FRAME_COLUMNS: tuple[str, ...] = tuple(FRAME_DTYPES)


@dataclass(frozen=True, slots=True)
class Kline:
    """One hourly kline of one symbol."""

    symbol: str
    interval: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: int | None = None
    quote_volume: float | None = None
    count: int | None = None
    taker_buy_volume: float | None = None
    taker_buy_quote_volume: float | None = None

    @property
    def event_time(self) -> int:
        """Close time in ms (``open_time + interval - 1`` when the source lacks it)."""
        if self.close_time is not None:
            return self.close_time
        return self.open_time + INTERVAL_MS.get(self.interval, HOUR_MS) - 1

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.symbol, self.interval, self.open_time)

    def to_dict(self) -> dict[str, Any]:
        # every field is a scalar: no deep copy (``dataclasses.asdict`` made this the stream's hottest call)
        return {name: getattr(self, name) for name in _KLINE_FIELDS}

    def to_json(self, source: str) -> bytes:
        """The Kafka value of ``klines.1h``: the kline plus ``schema_version`` and ``source``."""
        payload = self.to_dict()
        payload["schema_version"] = SCHEMA_VERSION
        payload["source"] = source
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


_KLINE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Kline))


def _float(value: Any, name: str) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError) as exc:
        raise KlineParseError(f"{name}: not a number: {value!r}") from exc
    if not math.isfinite(result):
        raise KlineParseError(f"{name}: not finite: {value!r}")
    return result


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise KlineParseError(f"{name}: not an integer: {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise KlineParseError(f"{name}: not an integer: {value!r}")
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise KlineParseError(f"{name}: not an integer: {value!r}") from exc


def _optional_float(value: Any, name: str) -> float | None:
    return None if value is None or value == "" else _float(value, name)


def _optional_int(value: Any, name: str) -> int | None:
    return None if value is None or value == "" else _int(value, name)


def _check_symbol(symbol: Any) -> str:
    if not isinstance(symbol, str) or not symbol.isalnum() or not 2 <= len(symbol) <= 20:
        raise KlineParseError(f"symbol: invalid {symbol!r}")
    return symbol.upper()


#: Field names of a Binance kline stream message's ``k`` object, by contract name.
WS_FIELDS: dict[str, str] = {
    "symbol": "s",
    "interval": "i",
    "open_time": "t",
    "open": "o",
    "high": "h",
    "low": "l",
    "close": "c",
    "volume": "v",
    "close_time": "T",
    "quote_volume": "q",
    "count": "n",
    "taker_buy_volume": "V",
    "taker_buy_quote_volume": "Q",
}


def _kline_from(source: Mapping[str, Any], names: Mapping[str, str]) -> Kline:
    """Build a kline from a mapping whose keys are the contract names, or ``names[contract name]``.

    A missing required field raises ``KeyError`` with the source's own key."""

    def required(field: str) -> Any:
        return source[names.get(field, field)]

    def optional(field: str) -> Any:
        return source.get(names.get(field, field))

    return Kline(
        symbol=_check_symbol(required("symbol")),
        interval=str(required("interval")),
        open_time=_int(required("open_time"), "open_time"),
        open=_float(required("open"), "open"),
        high=_float(required("high"), "high"),
        low=_float(required("low"), "low"),
        close=_float(required("close"), "close"),
        volume=_float(required("volume"), "volume"),
        close_time=_optional_int(optional("close_time"), "close_time"),
        quote_volume=_optional_float(optional("quote_volume"), "quote_volume"),
        count=_optional_int(optional("count"), "count"),
        taker_buy_volume=_optional_float(optional("taker_buy_volume"), "taker_buy_volume"),
        taker_buy_quote_volume=_optional_float(optional("taker_buy_quote_volume"), "taker_buy_quote_volume"),
    )


def parse_rest_kline(row: Sequence[Any], symbol: str, interval: str = "1h") -> Kline:
    """Parse one array of Binance ``GET /api/v3/klines`` (12 fields; the last is ignored)."""
    if len(row) < 6:
        raise KlineParseError(f"REST kline has {len(row)} fields, expected 12")
    padded = list(row) + [None] * (11 - len(row))
    return Kline(
        symbol=_check_symbol(symbol),
        interval=interval,
        open_time=_int(padded[0], "open_time"),
        open=_float(padded[1], "open"),
        high=_float(padded[2], "high"),
        low=_float(padded[3], "low"),
        close=_float(padded[4], "close"),
        volume=_float(padded[5], "volume"),
        close_time=_optional_int(padded[6], "close_time"),
        quote_volume=_optional_float(padded[7], "quote_volume"),
        count=_optional_int(padded[8], "count"),
        taker_buy_volume=_optional_float(padded[9], "taker_buy_volume"),
        taker_buy_quote_volume=_optional_float(padded[10], "taker_buy_quote_volume"),
    )


def parse_ws_kline(message: Mapping[str, Any]) -> tuple[Kline, bool]:
    """Parse a Binance kline stream message (``{"e": "kline", ..., "k": {...}}``, or the combined
    stream's ``{"stream": ..., "data": {...}}``). Returns the kline and whether it is closed (``x``)."""
    data = message.get("data", message)
    if not isinstance(data, Mapping) or data.get("e") != "kline" or not isinstance(data.get("k"), Mapping):
        raise KlineParseError("not a kline stream message")
    k = data["k"]
    try:
        kline = _kline_from(k, WS_FIELDS)
    except KeyError as exc:
        raise KlineParseError(f"kline stream message lacks field {exc.args[0]!r}") from exc
    return kline, bool(k.get("x", False))


def parse_record(value: bytes | str | Mapping[str, Any]) -> Kline:
    """Parse the JSON value of a ``klines.1h`` Kafka record (what :meth:`Kline.to_json` writes)."""
    if isinstance(value, (bytes, str)):
        try:
            payload = json.loads(value)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KlineParseError(f"not JSON: {exc}") from exc
    else:
        payload = value
    if not isinstance(payload, Mapping):
        raise KlineParseError("record is not a JSON object")
    version = payload.get("schema_version")
    if version != SCHEMA_VERSION:
        raise KlineParseError(f"schema_version {version!r} is not {SCHEMA_VERSION}")
    try:
        return _kline_from(payload, {})
    except KeyError as exc:
        raise KlineParseError(f"record lacks field {exc.args[0]!r}") from exc


def check_kline(kline: Kline) -> list[str]:
    """Row-level sanity rules (the ones a single record can be judged by). Empty list = valid."""
    problems = []
    if kline.open_time % INTERVAL_MS.get(kline.interval, HOUR_MS) != 0:
        problems.append("open_time is not on the interval boundary")
    if min(kline.open, kline.high, kline.low, kline.close) <= 0:
        problems.append("prices must be > 0")
    if kline.low > min(kline.open, kline.close) or kline.high < max(kline.open, kline.close):
        problems.append("low <= open, close <= high violated")
    if kline.volume < 0:
        problems.append("volume must be >= 0")
    negative = [name for name in OPTIONAL_COLUMNS if (getattr(kline, name) or 0) < 0]
    if negative:
        problems.append(f"{', '.join(negative)} must be >= 0")
    interval = INTERVAL_MS.get(kline.interval, HOUR_MS)
    if kline.close_time is not None and not kline.open_time <= kline.close_time < kline.open_time + interval:
        problems.append("close_time must fall within the kline's interval")
    return problems


def empty_frame() -> pd.DataFrame:
    """An empty kline frame with the contract's columns and dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in FRAME_DTYPES.items()})


def klines_to_frame(klines: Sequence[Kline]) -> pd.DataFrame:
    """Klines → a frame with :data:`FRAME_COLUMNS` and :data:`FRAME_DTYPES`, sorted by key."""
    if not klines:
        return empty_frame()
    frame = pd.DataFrame([k.to_dict() for k in klines], columns=list(FRAME_COLUMNS))
    return conform_frame(frame)


def conform_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a frame the contract's columns (missing optional ones become empty), dtypes and order."""
    frame = frame.copy()
    for name in FRAME_COLUMNS:
        if name not in frame.columns:
            if name in OPTIONAL_COLUMNS or name == "close_time":
                frame[name] = pd.NA if FRAME_DTYPES[name] == "Int64" else np.nan
            else:
                raise KlineParseError(f"kline frame lacks required column {name!r}")
    frame = frame[list(FRAME_COLUMNS)].astype(FRAME_DTYPES)
    return frame.sort_values(["symbol", "interval", "open_time"], kind="stable").reset_index(drop=True)
