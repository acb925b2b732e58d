"""What the dashboard's JSON API returns, shaped from the rows the traders wrote to Cassandra.

The shaping functions are pure (rows in, JSON-ready dicts out) so they are unit-tested without a
database; :class:`DashboardReader` reads the rows through the Cassandra adapter's
``adapters.cassandra.reader.TradeReader``, the kill switch through ``adapters.cassandra.controls`` and the
candles through the kline lake (:mod:`klinestream.dashboard.klines`); the queries and the schema are the
adapters', never redefined here.

Bounded reads: the page's first load reads the last ``window_hours`` hours of each table (a range of the
clustering key with a ``LIMIT``), its refresh every 2 s reads the rows from the newest hour it holds on (that
hour again, because the order of the newest hour may still move from ``new`` to ``filled``), and zooming out
reads the ``window_hours`` before the oldest hour it holds. The overview reads single rows per trader.
:meth:`DashboardReader.summary` (``/api/summary``, the demo's figures) is the one whole-partition read: the
page never polls it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pandas as pd

from klinestream.dashboard.window import (
    candle_rows,
    closes_without_kline,
    model_changes,
    overview_row,
    pnl_start,
    shape_order,
    shape_position,
    starting_capital,
)
from models.kline import HOUR_MS
from models.records import ACTION_NAMES, NOT_EXECUTABLE, NOT_EXECUTABLE_REASONS, legacy_not_executable

log = logging.getLogger(__name__)

Row = dict[str, Any]


class TradeRows(Protocol):
    """The rows the dashboard reads (``adapters.cassandra.reader.TradeReader``)."""

    def read(self, table: str, trader_id: str, symbol: str) -> list[Row]: ...

    def read_hours(
        self,
        table: str,
        trader_id: str,
        symbol: str,
        start: int | None = None,
        end: int | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[Row]: ...

    def newest_decision(self, trader_id: str, symbol: str) -> Row | None: ...

    def traders(self) -> list[tuple[str, str]]: ...


class KillSwitchState(Protocol):
    """The kill switch the dashboard shows and sets (``adapters.cassandra.controls.CassandraControls``)."""

    def kill_switch_active(self, trader_id: str | None = None) -> bool: ...

    def set_kill_switch(self, active: bool, reason: str, trader_id: str | None = None) -> None: ...


class KlineSource(Protocol):
    """The klines drawn as candles (:class:`klinestream.dashboard.klines.LakeKlines`)."""

    def read(self, symbol: str, start: int, end: int) -> pd.DataFrame: ...


TABLES = ("decisions", "orders", "positions")
ROWS_PER_HOUR = 4
"""Row budget of a window per table and hour (one decision, order and position per hour; room for a swap)."""
MAX_WINDOW_ROWS = 20_000
REFRESH_ROWS = 500
"""Rows per table one refresh reads at most; a page that fell further behind asks again from the new cursor."""
MAX_OVERVIEW_TRADERS = 50
TRADER_LIST_TTL_S = 30.0


def _by_hour(rows: Sequence[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (int(r["open_time"]), str(r.get("model_version") or "")))


def starting_equity(positions: Sequence[Row]) -> float:
    """The account's equity before its first hour: the first row's day-start equity (the capital)."""
    return starting_capital(_by_hour(positions)[0] if positions else None)


def pnl_base(positions: Sequence[Row], since: int | None = None, capital: float | None = None) -> tuple[float, float]:
    """(equity, buy-and-hold equity) that P&L is counted from: the last mark before the hour ``since``; without
    ``since``, or with no mark before it, the capital before the trader's first hour.

    The dashboard (``?since=``, through :func:`~klinestream.dashboard.window.pnl_start` on the marks it reads)
    and the demo's summary (the replay's start) count P&L the same way, so the page the demo points at shows
    the numbers the demo printed."""
    marks = _by_hour(positions)
    start = starting_equity(marks) if marks or capital is None else capital
    before = [m for m in marks if since is not None and int(m["open_time"]) < since]
    return pnl_start(start, before[-1] if before else None)


def shape_decision(row: Row) -> Row:
    """One decision row as the page shows it."""
    action = int(row["action"])
    return {
        "open_time": int(row["open_time"]),
        "model_version": str(row["model_version"]),
        "action": ACTION_NAMES[action] if 0 <= action < len(ACTION_NAMES) else str(action),
        "greedy": ACTION_NAMES[int(row["greedy_action"])] if row.get("greedy_action") is not None else None,
        "price": float(row["price"]),
        "q": [row.get("q_hold"), row.get("q_buy"), row.get("q_sell")],
        "epsilon": row.get("epsilon"),
        "explored": bool(row.get("explored")),
        "online_updates": int(row.get("online_updates") or 0),
        "degraded": bool(row.get("degraded")),
        "order_status": row.get("order_status"),
        "batch_id": row.get("batch_id"),
        "swapped_from": row.get("swapped_from"),
    }


def latest_decisions(decisions: Sequence[Row], limit: int) -> list[Row]:
    """The ``limit`` newest decisions, newest first."""
    ordered = _by_hour(decisions)
    return [shape_decision(row) for row in reversed(ordered[-limit:])] if limit > 0 else []


def order_counts(orders: Sequence[Row]) -> dict[str, int]:
    """Orders by status (``rejected`` = refused by a risk check) and filled buys and sells. Rows of decisions that
    could not be orders, written as rejected orders before they stopped being orders, are not counted."""
    real = [row for row in orders if not legacy_not_executable(row)]
    counts: dict[str, int] = {"total": len(real), "buy": 0, "sell": 0}
    for row in real:
        status = str(row.get("status") or "unknown")
        counts[status] = counts.get(status, 0) + 1
        side = str(row.get("side") or "").lower()
        if side in ("buy", "sell") and status == "filled":
            counts[side] += 1
    return counts


def not_executable_counts(decisions: Sequence[Row], orders: Sequence[Row]) -> dict[str, int]:
    """Decisions whose action could not be an order (no order row), by reason, and in all (``total``): those
    recorded as such, plus older ones recorded as rejected orders (:func:`models.records.legacy_not_executable`)."""
    reasons = [str(d.get("order_reason") or "") for d in decisions if d.get("order_status") == NOT_EXECUTABLE]
    reasons += [str(o.get("reason")) for o in orders if legacy_not_executable(o)]
    counts = {reason: reasons.count(reason) for reason in NOT_EXECUTABLE_REASONS}
    return {"total": len(reasons), **counts}


def summarize(
    decisions: Sequence[Row],
    orders: Sequence[Row],
    positions: Sequence[Row],
    kill_switch: bool,
    since: int | None = None,
) -> Row:
    """Headline numbers: counts, P&L against buy-and-hold, the latest model version and learning counters.

    With ``since`` (epoch ms), decisions and orders are counted from that hour on and P&L is measured from the
    account marked just before it (see :func:`pnl_base`); without it, over the trader's whole life."""
    if since is not None:
        decisions = [r for r in decisions if int(r["open_time"]) >= since]
        orders = [r for r in orders if int(r["open_time"]) >= since]
    ordered, marks = _by_hour(decisions), _by_hour(positions)
    capital = starting_equity(marks)
    start_equity, start_buy_hold = pnl_base(marks, since)
    last_decision, last_mark = (ordered[-1] if ordered else None), (marks[-1] if marks else None)
    equity = float(last_mark["equity"]) if last_mark else start_equity
    buy_hold = float(last_mark["buy_hold_equity"]) if last_mark and last_mark.get("buy_hold_equity") else start_buy_hold
    return {
        "decisions": len(ordered),
        "first_hour": int(ordered[0]["open_time"]) if ordered else None,
        "last_hour": int(ordered[-1]["open_time"]) if ordered else None,
        "orders": order_counts(orders),
        "not_executable": not_executable_counts(decisions, orders),
        "since": since,
        "capital": capital,
        "start_equity": start_equity,
        "equity": equity,
        "pnl": equity - start_equity,
        "buy_hold_equity": buy_hold,
        "buy_hold_pnl": buy_hold - start_buy_hold,
        "units": float(last_mark["units"]) if last_mark else 0.0,
        "fees_paid": float(last_mark.get("fees_paid") or 0.0) if last_mark else 0.0,
        "model_version": str(last_decision["model_version"]) if last_decision else None,
        "model_versions": sorted({str(r["model_version"]) for r in ordered}),
        "online_updates": int(last_decision.get("online_updates") or 0) if last_decision else 0,
        "epsilon": last_decision.get("epsilon") if last_decision else None,
        "explored": sum(1 for r in ordered if r.get("explored")),
        "degraded": sum(1 for r in ordered if r.get("degraded")),
        "kill_switch": kill_switch,
    }


class DashboardReader:
    """The dashboard's reads: one trader's window of hours, the traders' overview, the kill switch, and the
    summary of the demo's figures. Every read but :meth:`summary` is bounded (see the module doc)."""

    def __init__(
        self,
        trades: TradeRows,
        controls: KillSwitchState,
        klines: KlineSource | None = None,
        window_hours: int = 168,
        stale_after_s: float = 3900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trades, self.controls, self.klines = trades, controls, klines
        self.window_hours, self.stale_after_s, self.clock = window_hours, stale_after_s, clock
        self._listed: tuple[float, list[dict[str, str]]] | None = None
        self._lock = threading.Lock()

    def traders(self) -> list[dict[str, str]]:
        """Every (trader, symbol) with positions, demo runs (newest first) before the others; the list is read
        again at most every 30 s (it is Cassandra's one scan of partition keys)."""
        with self._lock:
            if self._listed is not None and self.clock() - self._listed[0] < TRADER_LIST_TTL_S:
                return list(self._listed[1])
        rows = self.trades.traders()
        rows.sort(key=lambda pair: (not pair[0].startswith("demo-"), _reverse_key(pair[0]), pair[1]))
        listed = [{"trader_id": trader, "symbol": symbol} for trader, symbol in rows]
        with self._lock:
            self._listed = (self.clock(), listed)
        return list(listed)

    def summary(self, trader_id: str, symbol: str, since: int | None = None) -> Row:
        """The demo's figures (counts of decisions and orders, P&L) over the whole partitions from ``since``."""
        decisions, orders, positions = (self.trades.read(table, trader_id, symbol) for table in TABLES)
        body = summarize(decisions, orders, positions, self.controls.kill_switch_active(trader_id), since)
        return {"trader_id": trader_id, "symbol": symbol, **body}

    def decisions(self, trader_id: str, symbol: str, limit: int) -> list[Row]:
        """The ``limit`` newest decisions, newest first."""
        rows = self.trades.read_hours("decisions", trader_id, symbol, limit=limit, newest_first=True)
        return latest_decisions(rows, limit)

    def window(self, trader_id: str, symbol: str, since: int | None = None, hours: int | None = None) -> Row:
        """The first load: the last ``hours`` decided hours, the kill switch and the hour P&L counts from."""
        newest = self.trades.read_hours("decisions", trader_id, symbol, limit=1, newest_first=True)
        if newest:
            end = int(newest[0]["open_time"]) + HOUR_MS
            body = self._hours(trader_id, symbol, end - (hours or self.window_hours) * HOUR_MS, end)
        else:  # nothing decided yet: an empty window, the refresh tries the first load again
            body = {**self._shape(trader_id, symbol, {t: [] for t in TABLES}, 0, 0, None), "older": False}
        first = self.trades.read_hours("positions", trader_id, symbol, limit=1)
        before = None
        if since is not None:
            marks = self.trades.read_hours("positions", trader_id, symbol, end=since, limit=1, newest_first=True)
            before = marks[0] if marks else None
        capital = starting_capital(first[0] if first else None)
        start_equity, start_buy_hold = pnl_start(capital, before)
        body["base"] = {"since": since, "capital": capital, "start_equity": start_equity,
                        "start_buy_hold": start_buy_hold}  # fmt: skip
        return body

    def older(self, trader_id: str, symbol: str, before: int, hours: int | None = None) -> Row:
        """The ``hours`` before the hour ``before`` (the page zoomed out past the oldest hour it holds)."""
        return self._hours(trader_id, symbol, before - (hours or self.window_hours) * HOUR_MS, before)

    def newer(self, trader_id: str, symbol: str, after: int) -> Row:
        """The refresh: rows from the hour ``after`` (the newest the page holds) on, at most REFRESH_ROWS a table;
        ``truncated`` says more remain after ``cursor`` (the page asks again from there)."""
        rows = {t: self.trades.read_hours(t, trader_id, symbol, start=after, limit=REFRESH_ROWS) for t in TABLES}
        full = [int(r[-1]["open_time"]) for r in rows.values() if len(r) >= REFRESH_ROWS]
        # every decided hour has a decision and a position: the cursor is the newest hour both tables show (a
        # flush that is under way may have written one and not yet the other), lowered to where a table was cut
        newest = [int(rows[t][-1]["open_time"]) if rows[t] else after for t in ("decisions", "positions")]
        cursor = min(full + newest)
        rows = {t: [r for r in found if int(r["open_time"]) <= cursor] for t, found in rows.items()}
        body = self._shape(trader_id, symbol, rows, after, cursor + HOUR_MS, previous=None)
        body["cursor"], body["truncated"] = cursor, bool(full)
        return body

    def _hours(self, trader_id: str, symbol: str, start: int, end: int) -> Row:
        limit = min(MAX_WINDOW_ROWS, max(1, (end - start) // HOUR_MS) * ROWS_PER_HOUR)
        rows = {t: self.trades.read_hours(t, trader_id, symbol, start=start, end=end, limit=limit) for t in TABLES}
        previous = self.trades.read_hours("decisions", trader_id, symbol, end=start, limit=1, newest_first=True)
        body = self._shape(trader_id, symbol, rows, start, end, previous[0] if previous else None)
        body["older"] = bool(previous)
        return body

    def _shape(
        self, trader_id: str, symbol: str, rows: dict[str, list[Row]], start: int, end: int, previous: Row | None
    ) -> Row:
        decisions = rows["decisions"]
        decided_end = max((int(r["open_time"]) for r in decisions), default=start - HOUR_MS) + HOUR_MS
        klines = self.klines.read(symbol, start, min(end, decided_end)) if self.klines and decided_end > start else None
        candles = candle_rows(klines) if klines is not None else []
        return {
            "trader_id": trader_id,
            "symbol": symbol,
            "start": start,
            "end": end,
            "cursor": max((int(r["open_time"]) for r in decisions), default=None),
            "decisions": [shape_decision(r) for r in _by_hour(decisions)],
            "orders": [shape_order(r) for r in _by_hour(rows["orders"])],
            "positions": [shape_position(r) for r in _by_hour(rows["positions"])],
            "model_changes": model_changes(decisions, previous),
            "candles": candles,
            "closes": closes_without_kline(decisions, (c["open_time"] for c in candles)),
            "kill_switch": self._kill_switch(trader_id),
        }

    def _kill_switch(self, trader_id: str) -> dict[str, bool]:
        """The trader's switch (its own or the global one) and the global one alone."""
        return {"trader": self.controls.kill_switch_active(trader_id), "all": self.controls.kill_switch_active(None)}

    def overview(self, limit: int = MAX_OVERVIEW_TRADERS) -> Row:
        """One line per trader (at most ``limit``): four single-row reads each."""
        listed = self.traders()
        now = self.clock()
        lines = [self._overview_line(t["trader_id"], t["symbol"], now) for t in listed[:limit]]
        return {"traders": lines, "more": max(0, len(listed) - limit), "stale_after_s": self.stale_after_s}

    def _overview_line(self, trader_id: str, symbol: str, now: float) -> Row:
        first = self.trades.read_hours("positions", trader_id, symbol, limit=1)
        last = self.trades.read_hours("positions", trader_id, symbol, limit=1, newest_first=True)
        newest = self.trades.newest_decision(trader_id, symbol)
        killed = self.controls.kill_switch_active(trader_id)
        return overview_row((trader_id, symbol), first[0] if first else None, last[0] if last else None, newest,
                            killed, now, self.stale_after_s)  # fmt: skip


def _reverse_key(text: str) -> list[int]:
    """Sorts strings in descending order inside an ascending sort key."""
    return [-ord(c) for c in text] + [0]
