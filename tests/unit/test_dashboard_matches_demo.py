"""The dashboard's summary with ``since`` = the replay's start shows the numbers the demo's summary printed.

A demo trader decides (and may trade) on the warm-up hours seeded before the replay; the demo's summary counts
from the account marked just before the replay, the dashboard by default from the trader's first hour. With
``?since=`` (which the demo's dashboard and the link the demo prints carry) both count the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from klinestream.dashboard.api import DashboardReader, pnl_base, summarize
from klinestream.dashboard.server import build_app
from klinestream.demo.summary import trade_figures
from tests.unit.dashboard_fakes import ListTrades

H = 3_600_000
T0 = 1_672_531_200_000  # the replay's start: 2023-01-01 00:00 UTC


def decision(hour: int, action: int) -> dict[str, Any]:
    return {"open_time": T0 + hour * H, "model_version": "4", "action": action, "greedy_action": action,
            "price": 100.0, "online_updates": hour + 10, "epsilon": 0.01}  # fmt: skip


def order(hour: int, side: str) -> dict[str, Any]:
    return {"open_time": T0 + hour * H, "side": side, "status": "filled", "price": 100.0, "fee": 0.1}


def position(hour: int, equity: float, buy_hold: float) -> dict[str, Any]:
    return {"open_time": T0 + hour * H, "units": 1.0, "equity": equity, "buy_hold_equity": buy_hold,
            "day_start_equity": 100_000.0, "fees_paid": 0.0}  # fmt: skip


# two warm-up hours before the replay, with a trade that already moved the account, then three replay hours
DECISIONS = [decision(-2, 1), decision(-1, 0), decision(0, 2), decision(1, 1), decision(2, 0)]
ORDERS = [order(-2, "BUY"), order(0, "SELL"), order(1, "BUY")]
POSITIONS = [position(-2, 99_900.0, 100_050.0), position(-1, 99_700.0, 99_950.0), position(0, 100_200.0, 100_400.0),
             position(1, 100_100.0, 100_300.0), position(2, 100_600.0, 100_900.0)]  # fmt: skip


def test_the_summary_since_the_replay_start_equals_the_demo_figures() -> None:
    figures = trade_figures(DECISIONS, ORDERS, POSITIONS, T0, T0 + 3 * H)
    body = summarize(DECISIONS, ORDERS, POSITIONS, kill_switch=False, since=T0)

    assert figures.start_equity == 99_700.0 and figures.pnl == 900.0 and figures.buy_hold_pnl == 950.0
    assert body["start_equity"] == figures.start_equity and body["since"] == T0
    assert body["pnl"] == pytest.approx(figures.pnl) and body["buy_hold_pnl"] == pytest.approx(figures.buy_hold_pnl)
    assert body["decisions"] == figures.decisions == 3 and body["first_hour"] == T0
    assert body["orders"]["filled"] == figures.filled == 2


def test_without_since_the_dashboard_counts_the_trader_s_whole_life_including_the_warm_up() -> None:
    body = summarize(DECISIONS, ORDERS, POSITIONS, kill_switch=False)

    assert body["since"] is None and body["start_equity"] == 100_000.0
    assert body["pnl"] == 600.0 and body["buy_hold_pnl"] == 900.0 and body["decisions"] == 5


def test_pnl_base_falls_back_to_the_capital_before_the_first_hour() -> None:
    assert pnl_base(POSITIONS, since=T0 - 2 * H) == (100_000.0, 100_000.0)  # no mark before it
    assert pnl_base(POSITIONS, since=T0 + H) == (100_200.0, 100_400.0)
    assert pnl_base([], since=T0, capital=50_000.0) == (50_000.0, 50_000.0)


def test_the_route_takes_since_from_the_query_else_from_the_server_default_and_rejects_a_bad_one() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    demo = trade_figures(DECISIONS, ORDERS, POSITIONS, T0, T0 + 3 * H)

    async def scenario() -> None:
        sink = ListTrades({"decisions": DECISIONS, "orders": ORDERS, "positions": POSITIONS},
                          [("demo-20230101T000000", "BTCUSDT")])  # fmt: skip
        async with TestClient(TestServer(build_app(DashboardReader(sink, sink)))) as client:
            whole = await (await client.get("/api/summary")).json()
            replay = await (await client.get(f"/api/summary?since={T0}")).json()
            assert whole["pnl"] == 600.0 and replay["pnl"] == pytest.approx(demo.pnl)
            bad = await client.get("/api/summary?since=yesterday")
            assert bad.status == 400 and "epoch milliseconds" in (await bad.json())["error"]
        async with TestClient(TestServer(build_app(DashboardReader(sink, sink), since=T0))) as client:
            served = await (await client.get("/api/summary")).json()  # what the demo's own dashboard serves
            assert served["pnl"] == pytest.approx(demo.pnl) and served["since"] == T0

    asyncio.run(scenario())
