"""What the dashboard's JSON API returns, shaped from the rows the traders wrote to Cassandra.

The shaping functions are pure (rows in, JSON-ready dicts out) so they are unit-tested without a
database; :class:`DashboardReader` reads the rows through the Cassandra adapter's
``adapters.cassandra.reader.TradeReader`` and the kill switch through ``adapters.cassandra.controls``
(the queries and the schema are the adapter's, never redefined here).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from models.config import DEFAULT_CAPITAL
from models.records import ACTION_NAMES, NOT_EXECUTABLE, NOT_EXECUTABLE_REASONS, legacy_not_executable

log = logging.getLogger(__name__)

Row = dict[str, Any]


class TradeRows(Protocol):
    """The rows the dashboard reads (``adapters.cassandra.reader.TradeReader``)."""

    def read(self, table: str, trader_id: str, symbol: str) -> list[Row]: ...

    def traders(self) -> list[tuple[str, str]]: ...


class KillSwitchState(Protocol):
    """The kill switch the dashboard shows (``adapters.cassandra.controls.CassandraControls``)."""

    def kill_switch_active(self, trader_id: str | None = None) -> bool: ...


def _by_hour(rows: Sequence[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (int(r["open_time"]), str(r.get("model_version") or "")))


def starting_equity(positions: Sequence[Row]) -> float:
    """The account's equity before its first hour: the first row's day-start equity (the capital)."""
    if not positions:
        return DEFAULT_CAPITAL
    first = _by_hour(positions)[0]
    return float(first.get("day_start_equity") or first.get("equity") or DEFAULT_CAPITAL)


def pnl_base(positions: Sequence[Row], since: int | None = None, capital: float | None = None) -> tuple[float, float]:
    """(equity, buy-and-hold equity) that P&L is counted from: the last mark before the hour ``since``; without
    ``since``, or with no mark before it, the capital before the trader's first hour.

    The dashboard (``?since=``) and the demo's summary (the replay's start) both count P&L with this function,
    so the page the demo points at shows the numbers the demo printed."""
    marks = _by_hour(positions)
    start = starting_equity(marks) if marks or capital is None else capital
    before = [m for m in marks if since is not None and int(m["open_time"]) < since]
    if not before:
        return start, start
    last = before[-1]
    return float(last["equity"]), float(last.get("buy_hold_equity") or start)


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


def series(decisions: Sequence[Row], orders: Sequence[Row], positions: Sequence[Row]) -> Row:
    """Chart data: price per decided hour, filled buys and sells, equity, buy-and-hold and position."""
    ordered, marks = _by_hour(decisions), _by_hour(positions)
    fills = [o for o in orders if o.get("status") == "filled"]

    def markers(side: str) -> list[list[float]]:
        chosen = [o for o in fills if str(o.get("side") or "").upper() == side]
        return [[int(o["open_time"]), float(o.get("fill_price") or o["price"])] for o in _by_hour(chosen)]

    return {
        "price": [[int(r["open_time"]), float(r["price"])] for r in ordered],
        "buys": markers("BUY"),
        "sells": markers("SELL"),
        "equity": [[int(r["open_time"]), float(r["equity"])] for r in marks],
        "buy_hold": [[int(r["open_time"]), float(r["buy_hold_equity"] or 0.0)] for r in marks],
        "units": [[int(r["open_time"]), float(r["units"])] for r in marks],
    }


class DashboardReader:
    """Reads one trader's partitions (and the list of traders), and the kill switch."""

    def __init__(self, trades: TradeRows, controls: KillSwitchState) -> None:
        self.trades, self.controls = trades, controls

    def traders(self) -> list[dict[str, str]]:
        """Every (trader, symbol) with positions, demo runs (newest first) before the others."""
        rows = self.trades.traders()
        rows.sort(key=lambda pair: (not pair[0].startswith("demo-"), _reverse_key(pair[0]), pair[1]))
        return [{"trader_id": trader, "symbol": symbol} for trader, symbol in rows]

    def tables(self, trader_id: str, symbol: str) -> tuple[list[Row], list[Row], list[Row]]:
        read = self.trades.read
        return (
            read("decisions", trader_id, symbol),
            read("orders", trader_id, symbol),
            read("positions", trader_id, symbol),
        )

    def summary(self, trader_id: str, symbol: str, since: int | None = None) -> Row:
        decisions, orders, positions = self.tables(trader_id, symbol)
        body = summarize(decisions, orders, positions, self.controls.kill_switch_active(trader_id), since)
        return {"trader_id": trader_id, "symbol": symbol, **body}

    def decisions(self, trader_id: str, symbol: str, limit: int) -> list[Row]:
        return latest_decisions(self.trades.read("decisions", trader_id, symbol), limit)

    def series(self, trader_id: str, symbol: str) -> Row:
        return series(*self.tables(trader_id, symbol))


def _reverse_key(text: str) -> list[int]:
    """Sorts strings in descending order inside an ascending sort key."""
    return [-ord(c) for c in text] + [0]
