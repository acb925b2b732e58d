"""The exchange simulator as a real HTTP + websocket server: Binance REST semantics through python-binance,
fault injection, kline streams with x=false updates before the closed kline, paper orders."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException

from adapters.binance.endpoints import use_base_url
from adapters.binance.rest import BinanceKlineClient
from models.kline import HOUR_MS, parse_ws_kline
from models.synthetic import random_walk_klines
from simulator import FaultPlan, ReplayClock
from tests.market_data import ms, running_simulator
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
T0 = ms("2022-01-01T00:00")
MARKET = random_walk_klines(SYMBOLS, ms("2022-01-01T00:00"), 48)


def _python_binance(base_url: str, secret: str | None = None) -> Client:
    return use_base_url(Client("key" if secret else None, secret, ping=False), base_url)


def test_klines_follow_binance_start_end_limit_semantics() -> None:
    with running_simulator(MARKET) as sim:
        client = _python_binance(sim.base_url)
        assert client.ping() == {}
        page = client.get_klines(symbol="BTCUSDT", interval="1h", startTime=T0 + 1, limit=5)
        assert [row[0] for row in page] == [T0 + i * HOUR_MS for i in range(1, 6)]
        bounded = client.get_klines(symbol="BTCUSDT", interval="1h", startTime=T0, endTime=T0 + 2 * HOUR_MS)
        assert len(bounded) == 3  # endTime is inclusive of an open time
        last = client.get_klines(symbol="BTCUSDT", interval="1h", endTime=T0 + 9 * HOUR_MS, limit=2)
        assert [row[0] for row in last] == [T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS]
        assert len(page[0]) == 12 and isinstance(page[0][1], str)
        with pytest.raises(BinanceAPIException) as unknown:
            client.get_klines(symbol="NOPEUSDT", interval="1h")
        assert unknown.value.code == -1121
        with pytest.raises(BinanceAPIException) as too_many:
            client.get_klines(symbol="BTCUSDT", interval="1h", limit=1001)
        assert too_many.value.code == -1130
        info = client.get_exchange_info()
        assert [s["symbol"] for s in info["symbols"]] == SYMBOLS


def test_rest_klines_are_the_served_klines_exactly() -> None:
    with running_simulator(MARKET) as sim:
        klines = BinanceKlineClient(sim.base_url).fetch_klines("ETHUSDT", T0, T0 + 48 * HOUR_MS)
    expected = MARKET[MARKET["symbol"] == "ETHUSDT"].reset_index(drop=True)
    assert [k.close for k in klines] == list(expected["close"])
    assert [k.count for k in klines] == list(expected["count"])


def test_rate_limit_with_retry_after_and_5xx_are_retried_until_success() -> None:
    with running_simulator(MARKET) as sim:
        requests.post(f"{sim.base_url}/_sim/faults", json={"kind": "rate_limit", "count": 1, "retry_after": 1})
        requests.post(f"{sim.base_url}/_sim/faults", json={"kind": "server_error", "count": 2, "status": 502})
        started = time.monotonic()
        klines = BinanceKlineClient(sim.base_url, backoff_s=0.05).fetch_klines("BTCUSDT", T0, T0 + 24 * HOUR_MS)
        elapsed = time.monotonic() - started
        requests_seen = sim.requests
    assert len(klines) == 24
    assert elapsed >= 1.0  # the Retry-After of the 429 was honoured
    assert requests_seen >= 1 + 4  # time, 429, 502, 502, then the page that succeeded


def test_a_bad_fault_spec_is_refused_by_the_control_endpoint() -> None:
    with running_simulator(MARKET) as sim:
        response = requests.post(f"{sim.base_url}/_sim/faults", json={"kind": "meteor"})
        assert response.status_code == 400 and "unknown fault kind" in response.json()["error"]


async def _read(url: str, count: int) -> tuple[list[dict[str, Any]], bool]:
    messages: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        while len(messages) < count:
            message = await asyncio.wait_for(ws.receive(), timeout=10)
            if message.type != aiohttp.WSMsgType.TEXT:
                return messages, True
            messages.append(json.loads(message.data))
    return messages, False


def test_stream_sends_updates_then_the_closed_kline_for_each_hour() -> None:
    # one second per simulated hour, counted from when the server is up: at 100 ms per hour, a busy machine
    # started the server after the first hour had gone by
    clock = ReplayClock(start_ms=T0 + 5 * HOUR_MS, speed=3.6)
    with running_simulator(MARKET, clock=clock) as sim:
        clock.restart()
        messages, dropped = asyncio.run(_read(f"{sim.ws_url}/ws/btcusdt@kline_1h", 6))
    assert not dropped
    parsed = [parse_ws_kline(m) for m in messages]
    assert [closed for _, closed in parsed] == [False, False, True, False, False, True]
    assert [k.open_time for k, _ in parsed] == [T0 + 5 * HOUR_MS] * 3 + [T0 + 6 * HOUR_MS] * 3
    closed_kline = parsed[2][0]
    stored = MARKET[(MARKET["symbol"] == "BTCUSDT") & (MARKET["open_time"] == T0 + 5 * HOUR_MS)].iloc[0]
    assert (closed_kline.high, closed_kline.low, closed_kline.close) == (stored["high"], stored["low"], stored["close"])
    partial = parsed[0][0]
    assert closed_kline.low <= partial.low <= partial.high <= closed_kline.high
    assert partial.volume < closed_kline.volume


def test_combined_stream_wraps_each_symbol_and_a_drop_fault_closes_it() -> None:
    clock = ReplayClock(start_ms=T0 + 2 * HOUR_MS, speed=36.0)
    faults = FaultPlan()
    with running_simulator(MARKET, clock=clock, faults=faults, updates_per_kline=0) as sim:
        url = f"{sim.ws_url}/stream?streams=btcusdt@kline_1h/ethusdt@kline_1h"
        messages, dropped = asyncio.run(_read(url, 4))
        assert not dropped
        assert [m["stream"] for m in messages] == ["btcusdt@kline_1h", "ethusdt@kline_1h"] * 2
        assert all(parse_ws_kline(m)[1] for m in messages)
        faults.add({"kind": "drop_websocket", "after_messages": 3})
        messages, dropped = asyncio.run(_read(url, 10))
    assert dropped and len(messages) == 3


def test_gap_and_corrupt_faults_change_what_is_served() -> None:
    with running_simulator(MARKET) as sim:
        for spec in (
            {"kind": "gap", "symbol": "BTCUSDT", "open_time": T0 + HOUR_MS},
            {"kind": "corrupt", "symbol": "BTCUSDT", "open_time": T0 + 2 * HOUR_MS, "how": "high_below_low"},
            {"kind": "corrupt", "symbol": "BTCUSDT", "open_time": T0 + 3 * HOUR_MS, "how": "duplicate"},
        ):
            assert requests.post(f"{sim.base_url}/_sim/faults", json=spec).status_code == 200
        klines = BinanceKlineClient(sim.base_url).fetch_klines("BTCUSDT", T0, T0 + 5 * HOUR_MS)
    times = [k.open_time for k in klines]
    assert times == [T0, T0 + 2 * HOUR_MS, T0 + 3 * HOUR_MS, T0 + 3 * HOUR_MS, T0 + 4 * HOUR_MS]
    assert klines[1].high < klines[1].low


def test_signed_market_orders_fill_at_the_replay_price_with_fees() -> None:
    clock = ReplayClock(start_ms=T0 + 5 * HOUR_MS + HOUR_MS // 2, speed=1e-6)
    with running_simulator(MARKET, clock=clock, api_secret="s3cret") as sim:
        client = _python_binance(sim.base_url, "s3cret")
        assert client.create_test_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=0.5) == {}
        order = client.create_order(
            symbol="BTCUSDT", side="BUY", type="MARKET", quantity=0.5, newClientOrderId="dqn-1-BTCUSDT-5"
        )
        with pytest.raises(BinanceAPIException) as duplicate:
            client.create_order(
                symbol="BTCUSDT", side="BUY", type="MARKET", quantity=0.5, newClientOrderId="dqn-1-BTCUSDT-5"
            )
        queried = client.get_order(symbol="BTCUSDT", origClientOrderId="dqn-1-BTCUSDT-5")
        with pytest.raises(BinanceAPIException) as unknown:
            client.get_order(symbol="BTCUSDT", origClientOrderId="never-sent")
        balances = {b["asset"]: float(b["free"]) for b in client.get_account()["balances"]}
        with pytest.raises(BinanceAPIException) as forged:
            _python_binance(sim.base_url, "wrong").get_account()
    price = float(MARKET[(MARKET["symbol"] == "BTCUSDT") & (MARKET["open_time"] == T0 + 4 * HOUR_MS)]["close"].iloc[0])
    fill = order["fills"][0]
    assert order["status"] == "FILLED" and float(fill["price"]) == price
    assert float(fill["commission"]) == pytest.approx(0.5 * price * 0.001)
    assert duplicate.value.code == -2010 and forged.value.code == -1022 and unknown.value.code == -2013
    assert queried["status"] == "FILLED" and queried["executedQty"] == order["executedQty"]
    assert balances["BTC"] == 0.5
    assert balances["USDT"] == pytest.approx(100_000 - 0.5 * price * 1.001)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_cli_runs_the_simulator_as_a_process(tmp_path: Path) -> None:
    folder = tmp_path / "klines"
    folder.mkdir()
    btc = MARKET[MARKET["symbol"] == "BTCUSDT"].drop(columns=["symbol", "interval"])
    btc.to_csv(folder / "BTCUSDT.csv", index=False)
    port = _free_port()
    cli = Path(sys.executable).with_name("klinestream")
    process = subprocess.Popen(
        [str(cli), "simulator", "--data-dir", str(folder), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "KLINESTREAM_HOME": str(tmp_path / "var")},
    )
    try:

        def answer() -> requests.Response | None:
            try:
                return requests.get(f"http://127.0.0.1:{port}/api/v3/klines?symbol=BTCUSDT&interval=1h", timeout=2)
            except requests.ConnectionError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                return None

        response = wait_for(answer, 60, interval=0.5, message="simulator did not start within 60 s")
        assert response.status_code == 200 and len(response.json()) == 48
    finally:
        process.terminate()
        process.wait(timeout=20)
