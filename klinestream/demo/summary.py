"""The demo's closing summary, computed from what Cassandra holds (not from in-memory counters), and
its rich table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from klinestream.dashboard.api import not_executable_counts, order_counts, pnl_base
from klinestream.demo.live import percentile
from models.config import DEFAULT_CAPITAL

Row = dict[str, Any]


@dataclass(frozen=True)
class TradeFigures:
    """The replay range as Cassandra records it for one trader."""

    hours: int
    decisions: int
    actions: dict[str, int]
    orders: int
    """Orders the trader sent or a risk check refused (decisions that could not be orders are not among them)."""
    filled: int
    rejected: int
    """Orders a risk check refused (kill switch, daily loss, max position, max notional, cash)."""
    not_executable: dict[str, int]
    """Decisions whose action could not be an order, by reason, and ``total``: no order row."""
    start_equity: float
    equity: float
    buy_hold_equity: float
    fees: float
    model_versions: tuple[str, ...]
    online_updates: int

    @property
    def pnl(self) -> float:
        return self.equity - self.start_equity

    @property
    def buy_hold_pnl(self) -> float:
        return self.buy_hold_equity - self.start_equity


def trade_figures(
    decisions: list[Row],
    orders: list[Row],
    positions: list[Row],
    start: int,
    end: int,
    capital: float = DEFAULT_CAPITAL,
) -> TradeFigures:
    """Counts and P&L over ``[start, end)``. P&L is measured from the account marked just before the range
    (the capital if the trader had no earlier hour) to the last hour, fees included; buy-and-hold is the
    trader's own benchmark column over the same hours."""
    names = ("hold", "buy", "sell")
    inside = [d for d in decisions if start <= int(d["open_time"]) < end]
    placed = [o for o in orders if start <= int(o["open_time"]) < end]
    marks = sorted(positions, key=lambda r: int(r["open_time"]))
    during = [m for m in marks if start <= int(m["open_time"]) < end]
    start_equity, start_bh = pnl_base(marks, start, capital)  # the dashboard's ?since= counts the same way
    last = during[-1] if during else None
    bh_change = (float(last["buy_hold_equity"]) - start_bh) if last else 0.0
    actions = {name: sum(1 for d in inside if int(d["action"]) == k) for k, name in enumerate(names)}
    counts = order_counts(placed)  # the dashboard's counting
    return TradeFigures(
        hours=(end - start) // 3_600_000,
        decisions=len({int(d["open_time"]) for d in inside}),
        actions=actions,
        orders=counts["total"],
        filled=counts.get("filled", 0),
        rejected=counts.get("rejected", 0),
        not_executable=not_executable_counts(inside, placed),
        start_equity=start_equity,
        equity=float(last["equity"]) if last else start_equity,
        buy_hold_equity=start_equity + bh_change,
        fees=sum(float(o.get("fee") or 0.0) for o in placed),
        model_versions=tuple(sorted({str(d["model_version"]) for d in inside})),
        online_updates=max((int(d.get("online_updates") or 0) for d in inside), default=0),
    )


@dataclass
class DemoSummary:
    run_id: str
    data_label: str
    steps: list[tuple[str, float, str]] = field(default_factory=list)
    """(step, seconds, what it did)."""
    promotion_note: str = ""
    trader_id: str = ""
    figures: TradeFigures | None = None
    latencies_ms: list[float] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    complete: bool = False

    def latency(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def _money(value: float) -> str:
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def render(summary: DemoSummary) -> Any:
    """A rich renderable: the steps, then the trading figures, latency and URLs."""
    from rich.console import Group
    from rich.table import Table

    steps = Table(title=f"klinestream demo {summary.run_id}", title_justify="left")
    for name, justify in (("step", "left"), ("seconds", "right"), ("what it did", "left")):
        steps.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, seconds, note in summary.steps:
        steps.add_row(name, f"{seconds:,.1f}", note)
    steps.add_row("total", f"{summary.wall_seconds:,.1f}", "" if summary.complete else "INCOMPLETE — see above")
    table = Table(title="live replay (as recorded in Cassandra)", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    f = summary.figures
    table.add_row("data", summary.data_label)
    table.add_row("promotion", summary.promotion_note)
    if f is not None:
        table.add_row("trader", f"{summary.trader_id} (models {', '.join(f.model_versions) or '-'})")
        table.add_row(
            "decisions",
            f"{f.decisions} of {f.hours} hours (hold {f.actions['hold']}, buy "
            f"{f.actions['buy']}, sell {f.actions['sell']})",
        )
        table.add_row(
            "orders", f"{f.orders} ({f.filled} filled, {f.rejected} rejected by risk checks), fees {_money(f.fees)}"
        )
        idle = f.not_executable
        table.add_row(
            "not executable",
            f"{idle['total']} decisions, no order ({idle['no_position']} sells with nothing held, "
            f"{idle['no_room']} buys with no room)",
        )
        table.add_row("P&L", f"{_money(f.pnl)} ({f.pnl / f.start_equity:+.2%}) from {_money(f.start_equity)}")
        table.add_row("buy-and-hold", f"{_money(f.buy_hold_pnl)} ({f.buy_hold_pnl / f.start_equity:+.2%})")
        table.add_row("vs buy-and-hold", _money(f.pnl - f.buy_hold_pnl))
        table.add_row("online updates", str(f.online_updates))
    lat = summary.latencies_ms
    if lat:
        table.add_row(
            "latency",
            f"Kafka append → decision durable: p50 {summary.latency(0.5):,.0f} ms, p90 "
            f"{summary.latency(0.9):,.0f} ms, p99 {summary.latency(0.99):,.0f} ms, "
            f"max {max(lat):,.0f} ms ({len(lat)} hours)",
        )
    for name, url in summary.urls.items():
        table.add_row(name, url)
    return Group(steps, table)
