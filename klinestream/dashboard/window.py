"""Shaping of the dashboard's bounded reads: rows of one trader's hours in, JSON-ready dicts out.

Pure functions, unit-tested without a database. :class:`klinestream.dashboard.api.DashboardReader` reads
the rows (a range of hours of each table, a few single rows) and hands them here:

- orders and positions as the page shows them (every order, rejected ones with their reason);
- the hours where the model version changed (``swapped_from`` on a decision, or a version that differs from
  the decision before it), for the chart's markers;
- klines as candles, and the decided hours the kline lake does not hold yet (drawn from the decision's price);
- the overview of every trader, with its health: the age of its last decision, measured from the time the
  row was written (Cassandra's ``WRITETIME``), so a live trader (one decision per closed hour) and a replay
  (many per minute) are judged on the same wall clock. A trader is ``ok`` while its last decision is younger
  than ``stale_after_s`` (default one hour and five minutes: the next hour's kline closed and was decided),
  ``stale`` after that (it stopped, or it misses hours), and ``no decisions`` before its first one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from models.config import DEFAULT_CAPITAL
from models.records import ACTION_NAMES

Row = dict[str, Any]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def shape_order(row: Mapping[str, Any]) -> Row:
    """One order row as the orders table shows it."""
    return {
        "open_time": int(row["open_time"]),
        "client_order_id": str(row["client_order_id"]),
        "model_version": str(row.get("model_version") or ""),
        "side": str(row.get("side") or ""),
        "status": str(row.get("status") or "unknown"),
        "reason": row.get("reason"),
        "quantity": _float(row.get("quantity")),
        "price": _float(row.get("price")),
        "filled_quantity": _float(row.get("filled_quantity")),
        "fill_price": _float(row.get("fill_price")),
        "fee": _float(row.get("fee")),
        "mode": row.get("mode"),
    }


def shape_position(row: Mapping[str, Any]) -> Row:
    """One hour's account mark: equity, buy-and-hold equity, units, cash."""
    return {
        "open_time": int(row["open_time"]),
        "equity": float(row["equity"]),
        "buy_hold_equity": _float(row.get("buy_hold_equity")),
        "units": float(row.get("units") or 0.0),
        "cash": _float(row.get("cash")),
        "fees_paid": float(row.get("fees_paid") or 0.0),
        "model_version": str(row.get("model_version") or ""),
    }


def model_changes(decisions: Sequence[Mapping[str, Any]], previous: Mapping[str, Any] | None = None) -> list[Row]:
    """The hours where the traded model version changed, oldest first.

    ``decisions`` in any order; ``previous`` is the newest decision before them (None: the first one known).
    A decision marks a change when it carries ``swapped_from`` (the stream's hot swap) or when its version
    differs from the decision of the hour before it (a restart on another version)."""
    ordered = sorted(decisions, key=lambda r: (int(r["open_time"]), str(r["model_version"])))
    changes: list[Row] = []
    last_version = None if previous is None else str(previous["model_version"])
    for row in ordered:
        version, swapped_from = str(row["model_version"]), row.get("swapped_from")
        if swapped_from or (last_version is not None and version != last_version):
            changes.append({"open_time": int(row["open_time"]), "from": swapped_from or last_version, "to": version})
        last_version = version
    return changes


def candle_rows(frame: pd.DataFrame) -> list[Row]:
    """Klines (a contract frame, one symbol) as candles: open time, OHLC and volume, in hour order."""
    if frame.empty:
        return []
    ordered = frame.sort_values("open_time")
    names = ("open_time", "open", "high", "low", "close", "volume")
    columns = [ordered[name].to_numpy() for name in names]
    return [
        {"open_time": int(t), **{name: float(value) for name, value in zip(names[1:], values, strict=True)}}
        for t, *values in zip(*columns, strict=True)
    ]


def closes_without_kline(decisions: Iterable[Mapping[str, Any]], candle_hours: Iterable[int]) -> list[list[float]]:
    """``[hour, price]`` of the decided hours the lake has no kline for (the stream's close, drawn as a line)."""
    have = set(candle_hours)
    closes = {int(r["open_time"]): float(r["price"]) for r in decisions if int(r["open_time"]) not in have}
    return [[hour, price] for hour, price in sorted(closes.items())]


def starting_capital(first_mark: Mapping[str, Any] | None) -> float:
    """The account's equity before its first hour: the first mark's day-start equity (the capital)."""
    if first_mark is None:
        return DEFAULT_CAPITAL
    return float(first_mark.get("day_start_equity") or first_mark.get("equity") or DEFAULT_CAPITAL)


def pnl_start(capital: float, mark_before: Mapping[str, Any] | None) -> tuple[float, float]:
    """(equity, buy-and-hold equity) P&L is counted from: the last mark before the chosen hour, else the capital."""
    if mark_before is None:
        return capital, capital
    return float(mark_before["equity"]), float(mark_before.get("buy_hold_equity") or capital)


def health(written_at_us: int | None, now_s: float, stale_after_s: float) -> Row:
    """``ok`` / ``stale`` / ``no decisions`` from the age of the last decision's write (see the module doc)."""
    if written_at_us is None:
        return {"status": "no decisions", "age_s": None}
    age = max(0.0, now_s - written_at_us / 1e6)
    return {"status": "ok" if age <= stale_after_s else "stale", "age_s": round(age, 1)}


def overview_row(
    trader: tuple[str, str],
    first_mark: Mapping[str, Any] | None,
    last_mark: Mapping[str, Any] | None,
    newest_decision: Mapping[str, Any] | None,
    kill_switch: bool,
    now_s: float,
    stale_after_s: float,
) -> Row:
    """One line of the traders' overview: equity, P&L and buy-and-hold P&L since the trader's first hour,
    position, last decision and health."""
    capital = starting_capital(first_mark)
    equity = float(last_mark["equity"]) if last_mark else capital
    buy_hold = _float(last_mark.get("buy_hold_equity")) if last_mark else None
    buy_hold = capital if buy_hold is None else buy_hold
    last = None
    if newest_decision is not None:
        action = int(newest_decision["action"])
        last = {
            "open_time": int(newest_decision["open_time"]),
            "action": ACTION_NAMES[action] if 0 <= action < len(ACTION_NAMES) else str(action),
            "model_version": str(newest_decision["model_version"]),
            "price": _float(newest_decision.get("price")),
            "degraded": bool(newest_decision.get("degraded")),
        }
    written = newest_decision.get("written_at_us") if newest_decision else None
    return {
        "trader_id": trader[0],
        "symbol": trader[1],
        "capital": capital,
        "equity": equity,
        "pnl": equity - capital,
        "buy_hold_pnl": buy_hold - capital,
        "units": float(last_mark.get("units") or 0.0) if last_mark else 0.0,
        "last_decision": last,
        "health": health(None if written is None else int(written), now_s, stale_after_s),
        "kill_switch": kill_switch,
    }
