"""The combined kline websocket of python-binance, for the live ingestor.

Pointed at a Binance-compatible server (the exchange simulator) by :func:`~adapters.binance.endpoints.use_stream_url`.
Failures to open or read become :class:`~models.errors.TemporaryError` through the one translator
(:mod:`adapters.binance.errors`); the ingestor reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import ReadLoopClosed

from adapters.binance.endpoints import use_stream_url
from adapters.binance.errors import VENDOR_ERRORS, translate_error

#: Messages python-binance may buffer before it drops the socket (replays deliver bursts).
MAX_QUEUE = 10_000
#: Seconds python-binance's read loop waits for a frame before it looks at its state again (default 10).
READ_TIMEOUT = 1.0

log = logging.getLogger(__name__)


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
    manager = use_stream_url(BinanceSocketManager(client, max_queue_size=MAX_QUEUE), ws_url)
    socket = manager.multiplex_socket(stream_names(symbols))
    socket.TIMEOUT = READ_TIMEOUT  # its read loop notices a close request only between reads
    try:
        await socket.__aenter__()
    except VENDOR_ERRORS as exc:
        raise translate_error(exc, "kline stream unavailable") from exc
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
            raise translate_error(exc, "kline stream closed") from exc
        if isinstance(message, Mapping):
            yield message
