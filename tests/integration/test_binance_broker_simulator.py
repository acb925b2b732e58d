"""BinanceBroker through python-binance against the exchange simulator's real HTTP API: a resent order
(a replayed micro-batch) never trades twice."""

from __future__ import annotations

import pytest
from binance.client import Client

from adapters.binance.endpoints import use_base_url
from adapters.binance.orders import BinanceBroker
from models.broker import OrderRequest
from models.kline import HOUR_MS
from models.records import client_order_id
from models.settings import load_settings
from models.synthetic import random_walk_klines
from simulator import ReplayClock
from streaming.brokers import make_broker
from tests.market_data import ms, running_simulator

pytestmark = pytest.mark.integration

T0 = ms("2022-01-01T00:00")
MARKET = random_walk_klines(("BTCUSDT", "ETHUSDT"), ms("2022-01-01T00:00"), 24)


def test_a_resent_order_fills_once_at_the_exchange() -> None:
    clock = ReplayClock(start_ms=T0 + 5 * HOUR_MS + HOUR_MS // 2, speed=1e-6)
    with running_simulator(MARKET, clock=clock, api_secret="s3cret") as sim:
        settings = load_settings(trading_mode="testnet", binance_api_key="key", binance_api_secret="s3cret",
                                 binance_base_url=sim.base_url, fee_rate=0.001)  # fmt: skip
        broker = make_broker(settings)
        assert isinstance(broker, BinanceBroker) and broker.mode == "testnet"
        hour = T0 + 4 * HOUR_MS
        price = float(MARKET[(MARKET.symbol == "BTCUSDT") & (MARKET.open_time == hour)]["close"].iloc[0])
        order = OrderRequest(client_order_id("testnet-BTCUSDT", "3", "BTCUSDT", hour), "BTCUSDT", "BUY", 0.5, price,
                             hour)  # fmt: skip
        first = broker.submit(order)
        again = broker.submit(order)
        client = use_base_url(Client("key", "s3cret", ping=False), sim.base_url)
        balances = {b["asset"]: float(b["free"]) for b in client.get_account()["balances"]}
    assert first.status == "filled" and first.filled_quantity == 0.5 and first.fill_price == pytest.approx(price)
    assert first.fee == pytest.approx(0.5 * price * 0.001)
    assert again.status == "filled" and again.filled_quantity == 0.5  # the same order, not a second one
    assert balances["BTC"] == 0.5
    assert balances["USDT"] == pytest.approx(100_000 - 0.5 * price * 1.001)
