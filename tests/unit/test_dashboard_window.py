"""The dashboard's bounded reads and their shaping: windows of hours, the refresh cursor, model changes, health."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from klinestream.dashboard.api import REFRESH_ROWS, DashboardReader
from klinestream.dashboard.window import (
    candle_rows,
    closes_without_kline,
    health,
    model_changes,
    overview_row,
    pnl_start,
    shape_order,
)
from models.synthetic import synthetic_klines
from tests.unit.dashboard_fakes import FrameKlines, ListTrades

H = 3_600_000
T0 = 1_672_531_200_000


def decision(hour: int, version: str = "3", swapped_from: str | None = None) -> dict[str, Any]:
    return {"open_time": T0 + hour * H, "model_version": version, "action": hour % 3, "greedy_action": hour % 3,
            "price": 100.0 + hour, "epsilon": 0.01, "online_updates": hour, "swapped_from": swapped_from}  # fmt: skip


def position(hour: int, equity: float = 100_000.0) -> dict[str, Any]:
    return {"open_time": T0 + hour * H, "units": 1.0, "equity": equity, "buy_hold_equity": equity + 5.0,
            "day_start_equity": 100_000.0, "model_version": "3"}  # fmt: skip


def order(hour: int, status: str = "filled", reason: str | None = None) -> dict[str, Any]:
    return {"open_time": T0 + hour * H, "client_order_id": f"ks-{hour}", "model_version": "3", "side": "BUY",
            "status": status, "reason": reason, "quantity": 0.1, "price": 100.0, "filled_quantity": 0.1,
            "fill_price": 100.1, "fee": 0.01, "mode": "paper"}  # fmt: skip


def trades(hours: int) -> ListTrades:
    tables = {
        "decisions": [decision(h) for h in range(hours)],
        "orders": [order(h) for h in range(0, hours, 5)],
        "positions": [position(h, 100_000.0 + h) for h in range(hours)],
    }
    return ListTrades(tables, [("paper-BTCUSDT", "BTCUSDT")])


def test_a_model_change_is_a_swap_or_a_version_that_differs_from_the_hour_before() -> None:
    rows = [decision(3, "4"), decision(1, "3"), decision(2, "3"), decision(5, "5", swapped_from="4"), decision(4, "4")]
    assert model_changes(rows) == [{"open_time": T0 + 3 * H, "from": "3", "to": "4"},
                                   {"open_time": T0 + 5 * H, "from": "4", "to": "5"}]  # fmt: skip
    assert model_changes([decision(7, "4")], previous=decision(6, "3")) == [{"open_time": T0 + 7 * H, "from": "3",
                                                                             "to": "4"}]  # fmt: skip
    assert model_changes([decision(7, "4")]) == [], "the first decision known is no change"


def test_candles_and_the_decided_hours_the_lake_lacks() -> None:
    frame = synthetic_klines(4, symbols=("BTCUSDT",), start_ms=T0)
    candles = candle_rows(frame.sample(frac=1.0, random_state=1))
    assert [c["open_time"] for c in candles] == [T0 + h * H for h in range(4)]
    assert candles[2]["high"] == pytest.approx(float(frame["high"].iloc[2])) and set(candles[0]) >= {"open", "volume"}
    closes = closes_without_kline([decision(h) for h in range(6)], [c["open_time"] for c in candles])
    assert closes == [[T0 + 4 * H, 104.0], [T0 + 5 * H, 105.0]]


def test_health_is_the_age_of_the_last_decision_s_write() -> None:
    now = 1_800_000_000.0
    assert health(None, now, 3900) == {"status": "no decisions", "age_s": None}
    assert health(int((now - 60) * 1e6), now, 3900) == {"status": "ok", "age_s": 60.0}
    assert health(int((now - 3900) * 1e6), now, 3900)["status"] == "ok"
    assert health(int((now - 3901) * 1e6), now, 3900) == {"status": "stale", "age_s": 3901.0}


def test_the_overview_counts_pnl_from_the_capital_and_names_the_last_decision() -> None:
    newest = {**decision(9, "4"), "degraded": True, "written_at_us": 10**15}
    row = overview_row(("shadow-x", "BTCUSDT"), position(0), position(9, 101_000.0), newest, True, 10**9 + 30, 3900)
    assert (row["trader_id"], row["capital"]) == ("shadow-x", 100_000.0)
    assert (row["pnl"], row["buy_hold_pnl"]) == (1_000.0, 1_005.0)
    assert row["last_decision"] == {"open_time": T0 + 9 * H, "action": "hold", "model_version": "4", "price": 109.0,
                                    "degraded": True}  # fmt: skip
    assert row["health"] == {"status": "ok", "age_s": 30.0} and row["kill_switch"] is True
    empty = overview_row(("t", "BTCUSDT"), None, None, None, False, 0.0, 3900)
    assert empty["pnl"] == 0.0 and empty["last_decision"] is None and empty["health"]["status"] == "no decisions"
    assert pnl_start(100_000.0, None) == (100_000.0, 100_000.0)
    assert pnl_start(100_000.0, position(3, 99_000.0)) == (99_000.0, 99_005.0)


def test_a_rejected_order_keeps_its_reason() -> None:
    shaped = shape_order(order(2, "rejected", "max_position"))
    assert (shaped["status"], shaped["reason"], shaped["side"]) == ("rejected", "max_position", "BUY")


def test_the_first_load_reads_the_last_hours_and_the_p_and_l_base_of_since() -> None:
    rows = trades(100)
    frame = synthetic_klines(98, symbols=("BTCUSDT",), start_ms=T0)
    reader = DashboardReader(rows, rows, FrameKlines(frame), window_hours=24)
    body = reader.window("paper-BTCUSDT", "BTCUSDT", since=T0 + 90 * H)

    assert [d["open_time"] for d in body["decisions"]] == [T0 + h * H for h in range(76, 100)]
    assert (body["start"], body["end"], body["cursor"], body["older"]) == (T0 + 76 * H, T0 + 100 * H, T0 + 99 * H, True)
    assert len(body["candles"]) == 22 and [c[0] for c in body["closes"]] == [T0 + 98 * H, T0 + 99 * H]
    assert body["base"] == {"since": T0 + 90 * H, "capital": 100_000.0, "start_equity": 100_089.0,
                            "start_buy_hold": 100_094.0}  # fmt: skip
    assert rows.rows_read < 24 * 3 + 10, "a window and a few single rows, not the partitions"

    older = reader.older("paper-BTCUSDT", "BTCUSDT", before=body["start"], hours=70)
    assert older["start"] == T0 + 6 * H and len(older["decisions"]) == 70 and older["older"] is True
    oldest = reader.older("paper-BTCUSDT", "BTCUSDT", before=older["start"])
    assert [d["open_time"] for d in oldest["decisions"]] == [T0 + h * H for h in range(6)] and oldest["older"] is False


def test_nothing_decided_yet_is_an_empty_window_without_cursor() -> None:
    empty = ListTrades({"decisions": [], "orders": [], "positions": []}, [])
    body = DashboardReader(empty, empty).window("t", "BTCUSDT")
    assert body["cursor"] is None and body["decisions"] == [] and body["older"] is False


def test_the_refresh_reads_from_the_newest_hour_on_and_stops_where_a_table_was_cut() -> None:
    rows = trades(10)
    reader = DashboardReader(rows, rows)
    rows.rows_read = 0
    quiet = reader.newer("paper-BTCUSDT", "BTCUSDT", after=T0 + 9 * H)
    assert quiet["cursor"] == T0 + 9 * H and quiet["truncated"] is False and rows.rows_read == 2  # hour 9 again

    rows.tables["positions"] = rows.tables["positions"][:-1]  # a flush under way: hour 9's position not yet there
    lagging = reader.newer("paper-BTCUSDT", "BTCUSDT", after=T0 + 7 * H)
    assert lagging["cursor"] == T0 + 8 * H
    assert [d["open_time"] for d in lagging["decisions"]] == [T0 + 7 * H, T0 + 8 * H]
    rows.tables["positions"] = rows.tables["positions"][:-1]  # no position of hour 8 or later yet
    stalled = reader.newer("paper-BTCUSDT", "BTCUSDT", after=T0 + 8 * H)
    assert stalled["cursor"] == T0 + 8 * H, "the page keeps asking from hour 8"
    assert [d["open_time"] for d in stalled["decisions"]] == [T0 + 8 * H]

    many = trades(REFRESH_ROWS + 20)
    first = DashboardReader(many, many).newer("paper-BTCUSDT", "BTCUSDT", after=T0)
    assert first["truncated"] is True and first["cursor"] == T0 + (REFRESH_ROWS - 1) * H
    assert len(first["decisions"]) == REFRESH_ROWS
    rest = DashboardReader(many, many).newer("paper-BTCUSDT", "BTCUSDT", after=first["cursor"])
    assert rest["truncated"] is False and rest["cursor"] == T0 + (REFRESH_ROWS + 19) * H


def test_the_window_route_chooses_first_load_refresh_or_older_and_rejects_bad_numbers() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from klinestream.dashboard.server import build_app

    rows = trades(60)

    async def scenario() -> None:
        async with TestClient(TestServer(build_app(DashboardReader(rows, rows, window_hours=10)))) as client:
            first = await (await client.get("/api/window")).json()
            assert first["trader_id"] == "paper-BTCUSDT" and len(first["decisions"]) == 10 and "base" in first
            newer = await (await client.get(f"/api/window?after={first['cursor']}")).json()
            assert [d["open_time"] for d in newer["decisions"]] == [first["cursor"]]
            older = await (await client.get(f"/api/window?before={first['start']}&hours=5")).json()
            assert len(older["decisions"]) == 5 and older["end"] == first["start"]
            bad = await client.get("/api/window?after=yesterday")
            assert bad.status == 400 and "after must be an integer" in (await bad.json())["error"]
            overview = await (await client.get("/api/overview")).json()
            assert overview["traders"][0]["equity"] == 100_059.0 and overview["more"] == 0

    asyncio.run(scenario())
