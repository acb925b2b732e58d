"""Synthetic klines and stand-ins for the unit tests of the live path (never used outside tests/unit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.kafka import DlqRecord
from models.alerts import Alert
from models.kline import HOUR_MS, Kline

T0 = 1_672_531_200_000  # 2023-01-01T00:00Z
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")


def kline(symbol: str, hour: int, price: float = 100.0, **changes: Any) -> Kline:
    """A valid synthetic hourly kline ``hour`` hours after :data:`T0`."""
    open_time = T0 + hour * HOUR_MS
    fields: dict[str, Any] = {
        "symbol": symbol,
        "interval": "1h",
        "open_time": open_time,
        "open": price,
        "high": price + 2,
        "low": price - 1,
        "close": price + 1,
        "volume": 10.0,
        "close_time": open_time + HOUR_MS - 1,
        "quote_volume": 1000.0,
        "count": 7,
        "taker_buy_volume": 4.0,
        "taker_buy_quote_volume": 400.0,
    }
    fields.update(changes)
    return Kline(**fields)


def ws_message(k: Kline, closed: bool, combined: bool = True) -> dict[str, Any]:
    """A Binance kline stream event carrying ``k`` (wrapped like the combined stream)."""
    data = {
        "e": "kline",
        "E": k.open_time + HOUR_MS,
        "s": k.symbol,
        "k": {
            "t": k.open_time,
            "T": k.close_time,
            "s": k.symbol,
            "i": k.interval,
            "o": str(k.open),
            "c": str(k.close),
            "h": str(k.high),
            "l": str(k.low),
            "v": str(k.volume),
            "n": k.count,
            "x": closed,
            "q": str(k.quote_volume),
            "V": str(k.taker_buy_volume),
            "Q": str(k.taker_buy_quote_volume),
        },
    }
    return {"stream": f"{k.symbol.lower()}@kline_1h", "data": data} if combined else data


class ListSink:
    """Collects what the ingestor publishes; counts flushes."""

    def __init__(self) -> None:
        self.published: list[tuple[Kline, str]] = []
        self.flushes = 0

    def publish(self, kline: Kline, source: str) -> None:
        self.published.append((kline, source))

    def flush(self) -> None:
        self.flushes += 1

    def keys(self) -> list[tuple[str, int]]:
        return [(k.symbol, (k.open_time - T0) // HOUR_MS) for k, _ in self.published]


class FakeRest:
    """REST klines served from a dict, with a server clock; records the calls."""

    def __init__(self, klines: list[Kline], now_ms: int) -> None:
        self.klines_by_symbol: dict[str, list[Kline]] = {}
        for k in klines:
            self.klines_by_symbol.setdefault(k.symbol, []).append(k)
        self.now_ms = now_ms
        self.calls: list[tuple[str, int, int]] = []

    async def server_time(self) -> int:
        return self.now_ms

    async def klines(self, symbol: str, start_ms: int, end_ms: int) -> list[Kline]:
        self.calls.append((symbol, start_ms, end_ms))
        rows = self.klines_by_symbol.get(symbol, [])
        return [k for k in rows if start_ms <= k.open_time <= end_ms and k.open_time <= self.now_ms]


class RecordingTrader:
    """Stand-in of ``OnlineTrader.process_batch``: skips batch ids it has seen, records the klines."""

    def __init__(self) -> None:
        self.last_batch_id = -1
        self.batches: list[tuple[int, list[Kline], set[int]]] = []

    def process_batch(self, batch_id: int, klines: list[Kline], degraded: set[int] | None = None) -> bool:
        if batch_id <= self.last_batch_id:
            return False
        self.batches.append((batch_id, list(klines), set(degraded or ())))
        self.last_batch_id = batch_id
        return True

    def klines(self) -> list[Kline]:
        return [k for _, klines, _ in self.batches for k in klines]


class ListDlq:
    """Stand-in of the DLQ writer: keeps what would be written to ``klines.dlq``."""

    def __init__(self) -> None:
        self.records: list[DlqRecord] = []

    def write(self, records: Sequence[DlqRecord]) -> int:
        self.records.extend(records)
        return len(records)


class ListAlerts:
    """An alert sink that keeps the alerts (the record path's sinks are plugged in the same way)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def emit(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def kinds(self) -> list[str]:
        return [a.kind for a in self.alerts]
