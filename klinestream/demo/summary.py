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
    log_file: str = ""
    """Where the libraries' output went (warnings, Spark's and Airflow's logs)."""

    def latency(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def summary_dict(summary: DemoSummary) -> dict[str, Any]:
    """The summary's figures, as ``demo --json`` prints them and as :func:`render` shows them."""
    out: dict[str, Any] = {
        "run_id": summary.run_id,
        "complete": summary.complete,
        "wall_seconds": round(summary.wall_seconds, 1),
        "steps": [{"step": name, "seconds": round(seconds, 1), "what": note} for name, seconds, note in summary.steps],
        "data": summary.data_label,
        "promotion": summary.promotion_note,
        "trader": summary.trader_id or None,
        "figures": None,
        "latency_ms": None,
        "urls": dict(summary.urls),
        "log_file": summary.log_file or None,
    }
    f = summary.figures
    if f is not None:
        out["figures"] = {
            "model_versions": list(f.model_versions),
            "hours": f.hours,
            "decisions": f.decisions,
            "actions": dict(f.actions),
            "orders": f.orders,
            "filled": f.filled,
            "rejected": f.rejected,
            "not_executable": dict(f.not_executable),
            "fees": round(f.fees, 2),
            "start_equity": round(f.start_equity, 2),
            "pnl": round(f.pnl, 2),
            "return": round(f.pnl / f.start_equity, 4),
            "buy_hold_pnl": round(f.buy_hold_pnl, 2),
            "buy_hold_return": round(f.buy_hold_pnl / f.start_equity, 4),
            "vs_buy_and_hold": round(f.pnl - f.buy_hold_pnl, 2),
            "online_updates": f.online_updates,
        }
    lat = summary.latencies_ms
    if lat:
        quantiles = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
        out["latency_ms"] = {name: round(summary.latency(q)) for name, q in quantiles.items()}
        out["latency_ms"].update({"max": round(max(lat)), "hours": len(lat)})
    return out


def _money(value: float) -> str:
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def render(summary: DemoSummary) -> Any:
    """A rich renderable of :func:`summary_dict`: the steps, then the trading figures, latency, URLs and log."""
    from rich.console import Group
    from rich.table import Table

    data = summary_dict(summary)
    steps = Table(title=f"klinestream demo {data['run_id']}", title_justify="left")
    for name, justify in (("step", "left"), ("seconds", "right"), ("what it did", "left")):
        steps.add_column(name, justify=justify)  # type: ignore[arg-type]
    for step in data["steps"]:
        steps.add_row(step["step"], f"{step['seconds']:,.1f}", step["what"])
    incomplete = f"INCOMPLETE — see {data['log_file'] or 'above'}"
    steps.add_row("total", f"{data['wall_seconds']:,.1f}", "" if data["complete"] else incomplete)
    table = Table(title="live replay (as recorded in Cassandra)", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("data", data["data"])
    table.add_row("promotion", data["promotion"])
    for name, value in _figure_rows(data):
        table.add_row(name, value)
    for name, url in data["urls"].items():
        table.add_row(name, url)
    if data["log_file"]:
        table.add_row("library log", data["log_file"])
    return Group(steps, table)


def _figure_rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    f = data["figures"]
    if f is not None:
        a, idle = f["actions"], f["not_executable"]
        rows += [
            ("trader", f"{data['trader']} (models {', '.join(f['model_versions']) or '-'})"),
            (
                "decisions",
                f"{f['decisions']} of {f['hours']} hours (hold {a['hold']}, buy {a['buy']}, sell {a['sell']})",
            ),
            (
                "orders",
                f"{f['orders']} ({f['filled']} filled, {f['rejected']} rejected by risk checks), "
                f"fees {_money(f['fees'])}",
            ),
            (
                "not executable",
                f"{idle['total']} decisions, no order ({idle['no_position']} sells with nothing held, "
                f"{idle['no_room']} buys with no room, {idle['min_hold']} trades within the minimum holding time)",
            ),
            ("P&L", f"{_money(f['pnl'])} ({f['return']:+.2%}) from {_money(f['start_equity'])}"),
            ("buy-and-hold", f"{_money(f['buy_hold_pnl'])} ({f['buy_hold_return']:+.2%})"),
            ("vs buy-and-hold", _money(f["vs_buy_and_hold"])),
            ("online updates", str(f["online_updates"])),
        ]
    lat = data["latency_ms"]
    if lat:
        rows.append(
            (
                "latency",
                f"Kafka append → decision durable: p50 {lat['p50']:,} ms, p90 {lat['p90']:,} ms, "
                f"p99 {lat['p99']:,} ms, max {lat['max']:,} ms ({lat['hours']} hours)",
            )
        )
    return rows
