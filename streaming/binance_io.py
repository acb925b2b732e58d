"""python-binance at the edge of the live path: REST klines and the combined kline websocket.

Both can be pointed at a Binance-compatible server (the exchange simulator): python-binance 1.0.37 takes
no base URL argument, so the REST root (``AsyncClient.API_URL``) and the stream root
(``BinanceSocketManager.STREAM_URL``) are replaced on the instances right after construction.
``AsyncClient.create()`` is not used: it pings binance.com before the root could be changed.
Vendor errors become :class:`TemporaryError` (429, 418, 5xx, network) or :class:`PermanentError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import BinanceAPIException, BinanceRequestException, ReadLoopClosed
from websockets.exceptions import WebSocketException

from models.errors import KlineParseError, PermanentError, TemporaryError
from models.kline import HOUR_MS, Kline, parse_rest_kline

REST_PAGE = 1000
#: Messages python-binance may buffer before it drops the socket (replays deliver bursts).
MAX_QUEUE = 10_000
#: Seconds python-binance's read loop waits for a frame before it looks at its state again (default 10).
READ_TIMEOUT = 1.0

log = logging.getLogger(__name__)


def rest_root(base_url: str) -> str:
    """``http://host:port`` → python-binance's ``API_URL`` (``http://host:port/api``)."""
    return base_url.rstrip("/") + "/api"


def stream_root(ws_url: str) -> str:
    """``ws://host:port`` → python-binance's ``STREAM_URL`` (``ws://host:port/``)."""
    return ws_url.rstrip("/") + "/"


def make_client(base_url: str | None) -> AsyncClient:
    """An unauthenticated AsyncClient (market data needs no keys), rooted at ``base_url`` when given."""
    client = AsyncClient()
    if base_url:
        client.API_URL = rest_root(base_url)
    return client


class BinanceRest:
    """:class:`~streaming.ingestor.KlineRest` over python-binance's AsyncClient."""

    def __init__(self, client: AsyncClient, interval: str = "1h") -> None:
        self.client = client
        self.interval = interval

    async def server_time(self) -> int:
        response = await _call(self.client.get_server_time())
        return int(response["serverTime"])

    async def klines(self, symbol: str, start_ms: int, end_ms: int) -> list[Kline]:
        out: list[Kline] = []
        start = start_ms
        while start <= end_ms:
            rows = await _call(
                self.client.get_klines(
                    symbol=symbol, interval=self.interval, startTime=start, endTime=end_ms, limit=REST_PAGE
                )
            )
            try:
                page = [parse_rest_kline(row, symbol, self.interval) for row in rows]
            except KlineParseError as exc:
                raise PermanentError(f"REST klines of {symbol} unparseable: {exc}") from exc
            out.extend(page)
            if len(page) < REST_PAGE:
                break
            start = page[-1].open_time + HOUR_MS
        return out


async def _call(awaitable: Any) -> Any:
    try:
        return await awaitable
    except BinanceAPIException as exc:
        if exc.status_code in (418, 429) or exc.status_code >= 500:
            raise TemporaryError(f"binance HTTP {exc.status_code}: {exc.message}") from exc
        raise PermanentError(f"binance HTTP {exc.status_code}: {exc.message}") from exc
    except (TimeoutError, BinanceRequestException, aiohttp.ClientError, OSError) as exc:
        raise TemporaryError(f"binance request failed: {type(exc).__name__}: {exc}") from exc


def stream_names(symbols: list[str], interval: str = "1h") -> list[str]:
    return [f"{symbol.lower()}@kline_{interval}" for symbol in symbols]


@asynccontextmanager
async def open_kline_stream(
    client: AsyncClient, symbols: list[str], ws_url: str | None = None, close_timeout: float = 5.0
) -> AsyncIterator[AsyncIterator[Mapping[str, Any]]]:
    """The combined kline stream of ``symbols``; yields an async iterator of message dicts.

    Closing waits at most ``close_timeout`` s: python-binance's close can wait forever on a read loop
    that is busy reconnecting (its reconnect overwrites the exit request).
    """
    manager = BinanceSocketManager(client, max_queue_size=MAX_QUEUE)
    if ws_url:
        manager.STREAM_URL = stream_root(ws_url)
    socket = manager.multiplex_socket(stream_names(symbols))
    socket.TIMEOUT = READ_TIMEOUT  # its read loop notices a close request only between reads
    try:
        await socket.__aenter__()
    except (TimeoutError, OSError, WebSocketException) as exc:
        raise TemporaryError(f"kline stream unavailable: {type(exc).__name__}: {exc}") from exc
    try:
        yield _messages(socket)
    finally:
        try:
            await asyncio.wait_for(socket.__aexit__(None, None, None), timeout=close_timeout)
        except TimeoutError:
            log.warning("kline stream did not close within %.0f s; abandoned", close_timeout)


async def _messages(stream: Any) -> AsyncIterator[Mapping[str, Any]]:
    while True:
        try:
            message = await stream.recv()
        except ReadLoopClosed as exc:
            raise TemporaryError(f"kline stream closed: {exc}") from exc
        if isinstance(message, Mapping):
            yield message
