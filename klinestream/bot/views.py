"""What the bot's commands answer, as plain text from the rows the traders wrote (pure: rows in, text out).

Each :class:`TraderView` is one trader's newest decision and position, its orders of the current UTC day,
whether the kill switch stops it, and its positions of the last days (for ``/daily``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.records import ACTION_NAMES

Row = dict[str, Any]
DAY_MS = 86_400_000


@dataclass(frozen=True)
class TraderView:
    trader_id: str
    symbol: str
    decision: Row | None
    position: Row | None
    killed: bool
    orders_today: list[Row] = field(default_factory=list)
    positions: list[Row] = field(default_factory=list)
    """Positions of the last days, in hour order (``/daily``)."""


def _hour(open_time: int) -> str:
    return datetime.fromtimestamp(open_time / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _money(value: float) -> str:
    return f"{value:,.2f}"


def status_text(views: list[TraderView]) -> str:
    if not views:
        return "No trader has written a position yet."
    lines = []
    for v in views:
        lines.append(f"{v.trader_id} ({v.symbol}){'  KILL SWITCH ON' if v.killed else ''}")
        if v.decision is not None:
            d = v.decision
            action = ACTION_NAMES[int(d["action"])]
            lines.append(f"  last decision {_hour(d['open_time'])} UTC: {action} at {d['price']:g}, "
                         f"model v{d['model_version']}, {d['online_updates']} online updates")  # fmt: skip
        if v.position is not None:
            p = v.position
            lines.append(f"  holds {p['units']:g} {v.symbol}, cash {_money(p['cash'])}, equity {_money(p['equity'])}")
        statuses: dict[str, int] = {}
        for order in v.orders_today:
            statuses[order["status"]] = statuses.get(order["status"], 0) + 1
        done = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "none"
        lines.append(f"  orders today: {done}")
    return "\n".join(lines)


def profit_text(views: list[TraderView], capital: float) -> str:
    if not views:
        return "No trader has written a position yet."
    lines = []
    for v in views:
        if v.position is None:
            continue
        p = v.position
        pnl, hold = p["equity"] - capital, p["buy_hold_equity"] - capital
        lines.append(f"{v.trader_id} ({v.symbol}) at {_hour(p['open_time'])} UTC")
        lines.append(f"  equity {_money(p['equity'])}: P&L {pnl:+,.2f} ({pnl / capital:+.2%}) on {_money(capital)}")
        lines.append(
            f"  buy-and-hold {_money(p['buy_hold_equity'])}: {hold:+,.2f} ({hold / capital:+.2%}); holding cash: +0.00"
        )
        lines.append(f"  realised {p['realized_pnl']:+,.2f}, fees paid {_money(p['fees_paid'])}")
    return "\n".join(lines) or "No trader has written a position yet."


def daily_rows(positions: list[Row]) -> list[tuple[str, float, float]]:
    """(UTC day, equity at the day's last close, change over the day) of each day, oldest first."""
    last: dict[int, Row] = {}
    for p in positions:
        last[int(p["open_time"]) // DAY_MS] = p
    out = []
    for day in sorted(last):
        p = last[day]
        out.append((datetime.fromtimestamp(day * 86_400, UTC).date().isoformat(), float(p["equity"]),
                    float(p["equity"]) - float(p["day_start_equity"])))  # fmt: skip
    return out


def daily_text(views: list[TraderView]) -> str:
    if not views:
        return "No trader has written a position yet."
    lines = []
    for v in views:
        lines.append(f"{v.trader_id} ({v.symbol}), by UTC day:")
        rows = daily_rows(v.positions)
        lines += [f"  {day}  equity {_money(equity)}  {change:+,.2f}" for day, equity, change in rows] or ["  -"]
    return "\n".join(lines)


def champion_text(name: str, aliases: dict[str, int | None], gate: dict[str, str]) -> str:
    lines = [f"registered model {name}"]
    for alias in ("champion", "challenger", "previous"):
        version = aliases.get(alias)
        lines.append(f"  {alias}: {'v' + str(version) if version is not None else '-'}")
    if gate:
        lines.append(f"  champion's gate: {gate.get('gate.decision', '-')} ({gate.get('gate.reason', '-')})")
    return "\n".join(lines)
