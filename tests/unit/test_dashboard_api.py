"""The dashboard's JSON shaping: rows as the Cassandra sink writes them → what the page draws."""

from __future__ import annotations

from typing import Any

from klinestream.dashboard.api import latest_decisions, starting_equity, summarize
from klinestream.demo.live import latencies, percentile
from klinestream.demo.summary import trade_figures
from tests.unit.dashboard_fakes import ListTrades

H = 3_600_000
T0 = 1_672_531_200_000  # 2023-01-01 00:00 UTC


def decision(hour: int, action: int, version: str = "3", updates: int = 0) -> dict[str, Any]:
    return {"open_time": T0 + hour * H, "model_version": version, "action": action, "greedy_action": action,
            "q_hold": 0.1, "q_buy": 0.2, "q_sell": 0.0, "price": 100.0 + hour, "epsilon": 0.01, "explored": False,
            "online_updates": updates, "degraded": False, "order_status": "filled" if action else None,
            "batch_id": hour, "swapped_from": None}  # fmt: skip


def order(hour: int, side: str, status: str = "filled") -> dict[str, Any]:
    return {"open_time": T0 + hour * H, "side": side, "status": status, "price": 100.0 + hour,
            "fill_price": 100.5 + hour, "fee": 0.1}  # fmt: skip


def position(hour: int, units: float, equity: float, buy_hold: float) -> dict[str, Any]:
    return {"open_time": T0 + hour * H, "units": units, "equity": equity, "buy_hold_equity": buy_hold,
            "day_start_equity": 100_000.0, "fees_paid": 0.2}  # fmt: skip


DECISIONS = [decision(2, 2, updates=5), decision(0, 1, updates=1), decision(1, 0, updates=3)]  # out of order
ORDERS = [order(0, "BUY"), order(2, "SELL"), order(1, "BUY", status="rejected")]
POSITIONS = [position(1, 1.0, 100_010.0, 100_020.0), position(0, 1.0, 99_990.0, 100_000.0),
             position(2, 0.0, 100_050.0, 100_030.0)]  # fmt: skip


def test_summary_measures_pnl_against_buy_and_hold_from_the_last_position_and_counts_filled_orders() -> None:
    body = summarize(DECISIONS, ORDERS, POSITIONS, kill_switch=True)

    assert body["decisions"] == 3 and body["first_hour"] == T0 and body["last_hour"] == T0 + 2 * H
    assert body["pnl"] == 50.0 and body["buy_hold_pnl"] == 30.0
    assert body["orders"] == {"total": 3, "buy": 1, "sell": 1, "filled": 2, "rejected": 1}
    assert body["model_version"] == "3" and body["online_updates"] == 5 and body["kill_switch"] is True


def test_latest_decisions_are_newest_first_with_action_names() -> None:
    rows = latest_decisions(DECISIONS, limit=2)

    assert [r["open_time"] for r in rows] == [T0 + 2 * H, T0 + H]
    assert [r["action"] for r in rows] == ["sell", "hold"]
    assert latest_decisions(DECISIONS, limit=0) == []


def test_no_positions_yet_means_the_default_capital_and_empty_charts() -> None:
    assert starting_equity([]) == 100_000.0
    body = summarize([], [], [], kill_switch=False)
    assert body["decisions"] == 0 and body["pnl"] == 0.0 and body["model_version"] is None


def test_demo_figures_measure_the_replay_range_from_the_account_marked_just_before_it() -> None:
    before = position(-1, 0.0, 99_000.0, 98_000.0)
    figures = trade_figures([decision(-1, 0), *DECISIONS], ORDERS, [before, *POSITIONS], T0, T0 + 3 * H)

    assert figures.decisions == 3 and figures.actions == {"hold": 1, "buy": 1, "sell": 1}
    assert (figures.orders, figures.filled, figures.rejected) == (3, 2, 1)
    assert figures.start_equity == 99_000.0 and figures.pnl == 1_050.0
    assert figures.buy_hold_pnl == 100_030.0 - 98_000.0


def test_latency_pairs_hours_and_percentiles_interpolate() -> None:
    assert latencies({1: 150.0, 2: 400.0, 3: 90.0}, {1: 100.0, 2: 100.0}) == [50.0, 300.0]
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN


def test_routes_pick_the_newest_demo_trader_validate_limit_and_say_when_nothing_traded() -> None:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from klinestream.dashboard.api import DashboardReader
    from klinestream.dashboard.server import build_app

    async def scenario() -> None:
        traders = [
            ("paper-BTCUSDT", "BTCUSDT"),
            ("demo-20260101T000000", "BTCUSDT"),
            ("demo-20261122T004332", "BTCUSDT"),
        ]
        sink = ListTrades({"decisions": DECISIONS, "orders": ORDERS, "positions": POSITIONS}, traders)
        async with TestClient(TestServer(build_app(DashboardReader(sink, sink)))) as client:
            listed = await (await client.get("/api/traders")).json()
            assert [t["trader_id"] for t in listed] == ["demo-20261122T004332", "demo-20260101T000000", "paper-BTCUSDT"]
            summary = await (await client.get("/api/summary")).json()
            assert summary["trader_id"] == "demo-20261122T004332" and summary["decisions"] == 3
            assert len(await (await client.get("/api/decisions?limit=2")).json()) == 2
            assert (await client.get("/api/decisions?limit=many")).status == 400
            page = await client.get("/")
            assert page.status == 200 and "app.js" in await page.text()
        nothing = ListTrades({"decisions": [], "orders": [], "positions": []}, [])
        async with TestClient(TestServer(build_app(DashboardReader(nothing, nothing)))) as client:
            empty = await client.get("/api/window")
            assert empty.status == 404 and "klinestream demo" in (await empty.json())["error"]

    asyncio.run(scenario())


def test_decisions_that_could_not_be_orders_are_counted_apart_from_orders_old_rows_included() -> None:
    idle_sell = {**decision(3, 2), "order_status": "not_executable", "order_reason": "no_position"}
    idle_buy = {**decision(4, 1), "order_status": "not_executable", "order_reason": "no_room"}
    held = {**decision(6, 0), "order_status": "not_executable", "order_reason": "min_hold"}  # a trade min-hold kept
    legacy = {**order(5, "SELL", status="rejected"), "reason": "no_position"}  # written before this change
    refused = {**order(6, "BUY", status="rejected"), "reason": "kill_switch"}
    decisions, orders = [*DECISIONS, idle_sell, idle_buy, held], [*ORDERS, legacy, refused]

    body = summarize(decisions, orders, POSITIONS, kill_switch=False)
    assert body["orders"] == {"total": 4, "buy": 1, "sell": 1, "filled": 2, "rejected": 2}
    assert body["not_executable"] == {"total": 4, "no_position": 2, "no_room": 1, "min_hold": 1}
    figures = trade_figures(decisions, orders, POSITIONS, T0, T0 + 7 * H)
    assert (figures.orders, figures.filled, figures.rejected) == (4, 2, 2)
    assert figures.not_executable == {"total": 4, "no_position": 2, "no_room": 1, "min_hold": 1}
