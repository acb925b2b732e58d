"""A stand-in for the dashboard's reads (trade rows, kill switch, klines) over lists, for unit tests only."""

from __future__ import annotations

from typing import Any

import pandas as pd

Row = dict[str, Any]


class ListTrades:
    """The reads of ``adapters.cassandra.reader.TradeReader`` and the kill switch of ``CassandraControls``,
    over lists of rows per table (the same rows for every trader); counts the rows each read returns."""

    def __init__(self, tables: dict[str, list[Row]], traders: list[tuple[str, str]], written_at_us: int = 0) -> None:
        self.tables, self.listed, self.written_at_us = tables, traders, written_at_us
        self.switches: dict[str | None, bool] = {}
        self.rows_read = 0

    def traders(self) -> list[tuple[str, str]]:
        return list(self.listed)

    def read(self, table: str, trader_id: str, symbol: str) -> list[Row]:
        rows = list(self.tables[table])
        self.rows_read += len(rows)
        return rows

    def read_hours(
        self,
        table: str,
        trader_id: str,
        symbol: str,
        start: int | None = None,
        end: int | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[Row]:
        rows = [r for r in self.tables[table] if (start is None or r["open_time"] >= start)]
        rows = [r for r in rows if end is None or r["open_time"] < end]
        rows.sort(key=lambda r: (r["open_time"], str(r.get("model_version") or r.get("client_order_id") or "")))
        rows = (rows[::-1] if newest_first else rows)[:limit]
        self.rows_read += len(rows)
        return rows

    def newest_decision(self, trader_id: str, symbol: str) -> Row | None:
        rows = self.read_hours("decisions", trader_id, symbol, limit=1, newest_first=True)
        return {**rows[0], "written_at_us": self.written_at_us} if rows else None

    def kill_switch_active(self, trader_id: str | None = None) -> bool:
        return self.switches.get(None, False) or (trader_id is not None and self.switches.get(trader_id, False))

    def set_kill_switch(self, active: bool, reason: str, trader_id: str | None = None) -> None:
        self.switches[trader_id] = active


class FrameKlines:
    """Klines from one frame (``klinestream.dashboard.klines.LakeKlines`` without a lake)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def read(self, symbol: str, start: int, end: int) -> pd.DataFrame:
        times = self.frame["open_time"]
        return self.frame[(self.frame["symbol"] == symbol) & (times >= start) & (times < end)]
