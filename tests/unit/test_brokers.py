"""Brokers: paper fills, deterministic client order ids, idempotent Binance orders, trading consent."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
import requests
from binance.exceptions import BinanceAPIException
from pydantic import SecretStr

from adapters.binance.orders import BinanceBroker, order_client
from models.broker import OrderRequest, PaperBroker
from models.errors import SettingsError, TradingSafetyError
from models.records import client_order_id
from models.settings import Settings, load_settings
from streaming.brokers import make_broker

HOUR = 1_672_531_200_000  # 2023-01-01 00:00 UTC


def order(side: str = "BUY", quantity: float = 2.0, price: float = 20_000.0, cid: str = "ks-1-abc") -> OrderRequest:
    return OrderRequest(cid, "BTCUSDT", side, quantity, price, HOUR)


def test_paper_broker_fills_at_the_close_moved_by_slippage_and_charges_the_fee() -> None:
    broker = PaperBroker(fee_rate=0.001, slippage_bps=10.0)
    buy, sell = broker.submit(order("BUY")), broker.submit(order("SELL"))
    assert buy.status == sell.status == "filled" and buy.filled_quantity == 2.0
    assert buy.fill_price == pytest.approx(20_020.0) and sell.fill_price == pytest.approx(19_980.0)
    assert buy.fee == pytest.approx(2.0 * 20_020.0 * 0.001) and sell.fee == pytest.approx(2.0 * 19_980.0 * 0.001)
    assert broker.submit(order("BUY")) == buy  # deterministic: a replayed order fills the same way


def test_client_order_ids_are_deterministic_unique_and_valid_for_binance() -> None:
    first = client_order_id("paper-BTCUSDT", "3", "BTCUSDT", HOUR)
    assert first == client_order_id("paper-BTCUSDT", "3", "BTCUSDT", HOUR)
    others = {
        client_order_id("paper-BTCUSDT", "4", "BTCUSDT", HOUR),
        client_order_id("paper-BTCUSDT", "3", "ETHUSDT", HOUR),
        client_order_id("paper-BTCUSDT", "3", "BTCUSDT", HOUR + 3_600_000),
        client_order_id("testnet-BTCUSDT", "3", "BTCUSDT", HOUR),
    }
    assert first not in others and len(others) == 4
    assert re.fullmatch(r"[.A-Z:/a-z0-9_-]{1,36}", first)
    with pytest.raises(ValueError, match="hour boundary"):
        client_order_id("paper-BTCUSDT", "3", "BTCUSDT", HOUR + 1)


class FakeClient:
    """Records calls; knows the orders it has "filled"."""

    def __init__(self, existing: dict[str, dict[str, Any]] | None = None, duplicate_on_create: bool = False,
                 step: str = "0.00001") -> None:  # fmt: skip
        self.orders = dict(existing or {})
        self.created: list[dict[str, Any]] = []
        self.duplicate_on_create = duplicate_on_create
        self.step, self.info_calls = step, 0

    def get_symbol_info(self, symbol: str) -> dict[str, Any] | None:
        self.info_calls += 1
        return {"symbol": symbol, "filters": [{"filterType": "LOT_SIZE", "minQty": self.step, "stepSize": self.step}]}

    def get_order(self, **params: Any) -> dict[str, Any]:
        found = self.orders.get(params["origClientOrderId"])
        if found is None:
            raise BinanceAPIException(None, 400, json.dumps({"code": -2013, "msg": "Order does not exist."}))
        return found

    def create_order(self, **params: Any) -> dict[str, Any]:
        self.created.append(params)
        if self.duplicate_on_create:
            self.orders[params["newClientOrderId"]] = response(params["newClientOrderId"])
            raise BinanceAPIException(None, 400, json.dumps({"code": -2010, "msg": "Duplicate order sent."}))
        self.orders[params["newClientOrderId"]] = response(params["newClientOrderId"])
        return self.orders[params["newClientOrderId"]]


def response(cid: str) -> dict[str, Any]:
    fills = [{"commission": "40.01", "commissionAsset": "USDT"}]
    return {"orderId": 7, "clientOrderId": cid, "status": "FILLED", "executedQty": "2.00000",
            "cummulativeQuoteQty": "40010.0", "fills": fills}  # fmt: skip


def test_binance_broker_sends_the_client_order_id_and_reads_the_fill() -> None:
    client = FakeClient()
    fill = BinanceBroker(client, "testnet").submit(order(quantity=2.0))
    assert client.created == [{"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "2.00000",
                               "newClientOrderId": "ks-1-abc", "newOrderRespType": "FULL"}]  # fmt: skip
    assert fill.status == "filled" and fill.fill_price == pytest.approx(20_005.0) and fill.fee == pytest.approx(40.01)


def test_quantities_are_rounded_down_to_the_exchange_lot_step_read_once_per_symbol() -> None:
    client = FakeClient(step="0.001")
    broker = BinanceBroker(client, "testnet")
    broker.submit(order(quantity=0.123456, cid="ks-1-a"))
    broker.submit(order(quantity=1.9999, cid="ks-1-b"))
    assert [c["quantity"] for c in client.created] == ["0.123", "1.999"] and client.info_calls == 1
    assert BinanceBroker(FakeClient(), "testnet", quantity_step=0.1).format_quantity(0.25, 0.1) == "0.2"


def test_a_resent_order_returns_the_existing_fill_instead_of_trading_twice() -> None:
    client = FakeClient(existing={"ks-1-abc": response("ks-1-abc")})
    fill = BinanceBroker(client, "testnet").submit(order())
    assert client.created == [] and fill.status == "filled" and fill.exchange_order_id == "7"


def test_a_duplicate_id_error_is_answered_by_querying_the_existing_order() -> None:
    client = FakeClient(duplicate_on_create=True)
    fill = BinanceBroker(client, "testnet").submit(order())
    assert len(client.created) == 1 and fill.status == "filled" and fill.filled_quantity == 2.0


def rate_limited(retry_after: str) -> BinanceAPIException:
    limited = requests.Response()
    limited.status_code, limited.headers["Retry-After"] = 429, retry_after
    return BinanceAPIException(limited, 429, json.dumps({"code": -1003, "msg": "Too many requests."}))


class RateLimitedClient(FakeClient):
    """Answers the first order with a 429 carrying ``Retry-After``."""

    def __init__(self, retry_after: str) -> None:
        super().__init__()
        self.retry_after = retry_after

    def create_order(self, **params: Any) -> dict[str, Any]:
        if not self.created:
            self.created.append(params)
            raise rate_limited(self.retry_after)
        return super().create_order(**params)


def test_the_broker_waits_out_a_rate_limit_under_the_shared_retry_policy() -> None:
    broker, sleeps = BinanceBroker(RateLimitedClient("2"), "testnet"), []
    broker.retry = dataclasses.replace(broker.retry, sleep=sleeps.append)
    fill = broker.submit(order())
    assert sleeps == [2.0] and fill.status == "filled" and len(broker.client.created) == 2


def test_a_rate_limit_longer_than_the_broker_waits_fails_the_order_with_the_reason() -> None:
    broker, sleeps = BinanceBroker(RateLimitedClient("600"), "testnet"), []
    broker.retry = dataclasses.replace(broker.retry, sleep=sleeps.append)
    fill = broker.submit(order())
    assert fill.status == "failed" and "try again later" in (fill.reason or "") and sleeps == []


def test_the_order_client_targets_the_base_url_or_binance_testnet() -> None:
    keys = {"binance_api_key": "k", "binance_api_secret": "s"}
    simulator = order_client(load_settings(trading_mode="testnet", binance_base_url="http://127.0.0.1:8900", **keys))
    assert simulator._create_api_uri("order") == "http://127.0.0.1:8900/api/v3/order"
    testnet = order_client(load_settings(trading_mode="testnet", binance_base_url=None, **keys))
    assert testnet._create_api_uri("order").startswith("https://testnet.binance.vision/api/")


def unchecked(**values: Any) -> Settings:
    """Settings that skipped validation (as if built by hand): the broker factory must still refuse."""
    return Settings.model_construct(**{**load_settings().model_dump(), **values})


@pytest.mark.parametrize(
    "values",
    [
        {"trading_mode": "live", "live_confirm": True},
        {"trading_mode": "live", "binance_api_key": SecretStr("k"), "binance_api_secret": SecretStr("s")},
        {"trading_mode": "testnet", "binance_api_key": SecretStr("k")},
    ],
    ids=["live-without-keys", "live-without-confirmation", "testnet-without-secret"],
)
def test_make_broker_refuses_to_trade_without_explicit_settings_and_keys(values: dict[str, Any]) -> None:
    with pytest.raises(TradingSafetyError, match="refusing"):
        make_broker(unchecked(**values), client_factory=lambda _s: pytest.fail("no client may be built"))


def test_settings_refuse_live_mode_without_keys_and_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLINESTREAM_BINANCE_API_KEY", raising=False)
    with pytest.raises(SettingsError, match="KLINESTREAM_BINANCE_API_KEY"):
        load_settings(trading_mode="live", live_confirm=True)
    with pytest.raises(SettingsError, match="KLINESTREAM_LIVE_CONFIRM"):
        load_settings(trading_mode="live", binance_api_key="k", binance_api_secret="s")


def test_paper_is_the_default_and_backtests_never_get_keys() -> None:
    assert isinstance(make_broker(load_settings(trading_mode="paper")), PaperBroker)
    live = load_settings(trading_mode="live", live_confirm=True, binance_api_key="k", binance_api_secret="s")
    assert isinstance(make_broker(live, backtest=True, client_factory=lambda _s: pytest.fail("keys used")), PaperBroker)
    built: list[Settings] = []
    broker = make_broker(live, client_factory=lambda s: built.append(s) or FakeClient())  # type: ignore[func-returns-value]
    assert isinstance(broker, BinanceBroker) and broker.mode == "live" and len(built) == 1
