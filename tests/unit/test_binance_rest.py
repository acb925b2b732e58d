"""The python-binance kline clients: paging (one pager for the sync and async clients), retries on
temporary errors (honouring Retry-After), fast failure on permanent ones, vendor errors translated, only
closed klines kept. python-binance's HTTP layer is replaced by fake clients here; the real HTTP path is
tested against the simulator."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import requests
from binance.exceptions import BinanceAPIException, ReadLoopClosed
from websockets.exceptions import InvalidURI

from adapters.binance.errors import translate_error
from adapters.binance.rest import PAGE_LIMIT, BinanceKlineClient, BinanceRest, make_async_client, read_page
from models.errors import PermanentError, TemporaryError
from models.kline import HOUR_MS
from tests.market_data import ms

T0 = ms("2022-01-01T00:00")


def _api_error(status: int, code: int, retry_after: str | None = None) -> BinanceAPIException:
    response = requests.Response()
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    body = json.dumps({"code": code, "msg": "simulated"})
    response._content = body.encode()
    return BinanceAPIException(response, status, body)


def _row(open_time: int) -> list[Any]:
    return [open_time, "1.0", "2.0", "0.5", "1.5", "10", open_time + HOUR_MS - 1, "15", 3, "5", "7.5", "0"]


class FakeClient:
    """Serves ``hours`` klines from T0 like Binance (startTime/endTime/limit); raises queued errors first."""

    def __init__(self, hours: int, now: int, errors: list[Exception] | None = None) -> None:
        self.hours, self.now, self.errors = hours, now, list(errors or [])
        self.calls: list[dict[str, Any]] = []

    def get_server_time(self) -> dict[str, int]:
        return {"serverTime": self.now}

    def get_klines(self, **params: Any) -> list[list[Any]]:
        self.calls.append(params)
        if self.errors:
            raise self.errors.pop(0)
        times = [T0 + i * HOUR_MS for i in range(self.hours)]
        times = [t for t in times if params["startTime"] <= t <= params["endTime"] and t <= self.now]
        return [_row(t) for t in times[: params["limit"]]]


def _client(fake: FakeClient, sleeps: list[float]) -> BinanceKlineClient:
    return BinanceKlineClient(client=fake, sleep=sleeps.append, backoff_s=0.01, max_attempts=4)  # type: ignore[arg-type]


def test_a_range_is_fetched_in_pages_of_1000_without_overlap() -> None:
    fake = FakeClient(hours=2500, now=T0 + 10_000 * HOUR_MS)
    klines = _client(fake, []).fetch_klines("BTCUSDT", T0, T0 + 2500 * HOUR_MS)
    assert len(klines) == 2500 and len({k.open_time for k in klines}) == 2500
    assert [c["startTime"] for c in fake.calls] == [T0, T0 + 1000 * HOUR_MS, T0 + 2000 * HOUR_MS]
    assert all(c["limit"] == 1000 and c["endTime"] == T0 + 2500 * HOUR_MS - 1 for c in fake.calls)


def test_the_open_kline_is_dropped() -> None:
    fake = FakeClient(hours=10, now=T0 + 5 * HOUR_MS + 10)  # the 05:00 kline is still open
    klines = _client(fake, []).fetch_klines("BTCUSDT", T0, T0 + 10 * HOUR_MS)
    assert [k.open_time for k in klines] == [T0 + i * HOUR_MS for i in range(5)]


def test_rate_limits_and_server_errors_are_retried_honouring_retry_after() -> None:
    errors = [_api_error(429, -1003, retry_after="7"), _api_error(503, 0), requests.Timeout("slow")]
    fake = FakeClient(hours=3, now=T0 + 100 * HOUR_MS, errors=errors)
    sleeps: list[float] = []
    klines = _client(fake, sleeps).fetch_klines("BTCUSDT", T0, T0 + 3 * HOUR_MS)
    assert len(klines) == 3
    assert sleeps[0] == 7.0 and len(sleeps) == 3


def test_permanent_errors_fail_at_once() -> None:
    fake = FakeClient(hours=3, now=T0 + 100 * HOUR_MS, errors=[_api_error(400, -1121)])
    sleeps: list[float] = []
    with pytest.raises(PermanentError, match="code -1121"):
        _client(fake, sleeps).fetch_klines("NOPEUSDT", T0, T0 + 3 * HOUR_MS)
    assert len(fake.calls) == 1 and sleeps == []


def test_retries_are_bounded() -> None:
    fake = FakeClient(hours=3, now=T0 + 100 * HOUR_MS, errors=[_api_error(502, 0)] * 10)
    with pytest.raises(TemporaryError, match="HTTP 502"):
        _client(fake, []).fetch_klines("BTCUSDT", T0, T0 + 3 * HOUR_MS)
    assert len(fake.calls) == 4


def test_a_ban_longer_than_the_retry_budget_fails_with_advice() -> None:
    fake = FakeClient(hours=3, now=T0 + 100 * HOUR_MS, errors=[_api_error(418, -1003, retry_after="3600")])
    with pytest.raises(PermanentError, match="try again later"):
        _client(fake, []).fetch_klines("BTCUSDT", T0, T0 + 3 * HOUR_MS)


def test_vendor_errors_are_translated() -> None:
    assert isinstance(translate_error(_api_error(429, -1003, "2"), "x"), TemporaryError)
    assert translate_error(_api_error(429, -1003, "2"), "x").retry_after == 2.0  # type: ignore[union-attr]
    assert isinstance(translate_error(_api_error(500, 0), "x"), TemporaryError)
    assert isinstance(translate_error(requests.ConnectionError("refused"), "x"), TemporaryError)
    assert isinstance(translate_error(_api_error(401, -2015), "x"), PermanentError)


def test_base_url_points_python_binance_at_another_server() -> None:
    client = BinanceKlineClient("http://127.0.0.1:8900/")
    assert client.client.API_URL == "http://127.0.0.1:8900/api"
    assert client.client._create_api_uri("klines", signed=False) == "http://127.0.0.1:8900/api/v3/klines"


def test_translation_covers_the_async_and_websocket_paths() -> None:
    for exc in (aiohttp.ClientConnectionError("reset"), TimeoutError(), ReadLoopClosed("gone"), InvalidURI("x", "bad")):
        assert isinstance(translate_error(exc, "x"), TemporaryError), exc
    assert isinstance(translate_error(requests.exceptions.InvalidURL("no host"), "x"), PermanentError)
    assert isinstance(translate_error(ValueError("odd"), "x"), PermanentError)


def test_a_full_page_points_at_the_next_hour_and_a_short_page_ends_the_walk() -> None:
    end = T0 + 5000 * HOUR_MS
    full = [_row(T0 + i * HOUR_MS) for i in range(PAGE_LIMIT)]
    page, cursor = read_page(full, "BTCUSDT", "1h", T0 + 10 * HOUR_MS, end)
    assert len(page) == PAGE_LIMIT - 10 and page[0].open_time == T0 + 10 * HOUR_MS
    assert cursor == T0 + PAGE_LIMIT * HOUR_MS
    assert read_page(full, "BTCUSDT", "1h", T0, T0 + PAGE_LIMIT * HOUR_MS)[1] is None  # the range is done
    short, cursor = read_page(full[:3], "BTCUSDT", "1h", T0, end)
    assert len(short) == 3 and cursor is None
    with pytest.raises(PermanentError, match="unparseable"):
        read_page([["not", "a", "kline"]], "BTCUSDT", "1h", T0, end)


class FakeAsyncClient:
    """:class:`FakeClient` behind coroutines, like python-binance's AsyncClient."""

    def __init__(self, fake: FakeClient) -> None:
        self.fake = fake

    async def get_server_time(self) -> dict[str, int]:
        return self.fake.get_server_time()

    async def get_klines(self, **params: Any) -> list[list[Any]]:
        return self.fake.get_klines(**params)


def test_the_async_client_walks_the_same_pages_with_an_inclusive_end() -> None:
    fake = FakeClient(hours=2500, now=T0 + 10_000 * HOUR_MS)
    rest = BinanceRest(FakeAsyncClient(fake))  # type: ignore[arg-type]
    klines = asyncio.run(rest.klines("BTCUSDT", T0, T0 + 2499 * HOUR_MS))
    assert [k.open_time for k in klines] == [T0 + i * HOUR_MS for i in range(2500)]
    assert [c["startTime"] for c in fake.calls] == [T0, T0 + 1000 * HOUR_MS, T0 + 2000 * HOUR_MS]
    assert all(c["endTime"] == T0 + 2499 * HOUR_MS for c in fake.calls)
    assert asyncio.run(rest.server_time()) == T0 + 10_000 * HOUR_MS


def test_the_async_client_translates_vendor_errors() -> None:
    errors: list[Exception] = [_api_error(429, -1003, retry_after="3"), aiohttp.ClientConnectionError("reset")]
    rest = BinanceRest(FakeAsyncClient(FakeClient(hours=3, now=T0, errors=errors)))  # type: ignore[arg-type]
    with pytest.raises(TemporaryError, match="HTTP 429") as limited:
        asyncio.run(rest.klines("BTCUSDT", T0, T0 + 2 * HOUR_MS))
    assert limited.value.retry_after == 3.0
    with pytest.raises(TemporaryError, match="ClientConnectionError"):
        asyncio.run(rest.klines("BTCUSDT", T0, T0 + 2 * HOUR_MS))


def test_the_async_client_is_pointed_at_another_server_the_same_way() -> None:
    async def root() -> str:
        client = make_async_client("http://127.0.0.1:8900/")
        try:
            return str(client._create_api_uri("klines", signed=False))
        finally:
            await client.close_connection()

    assert asyncio.run(root()) == "http://127.0.0.1:8900/api/v3/klines"
