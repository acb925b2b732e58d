"""Klines over Binance's REST API through python-binance, from Binance or a Binance-compatible base URL
(the exchange simulator): a sync client for the batch backfill, an async one for the live ingestor.

- **Paging** (one pager for both): ``GET /api/v3/klines`` returns at most 1000 klines per call; a range
  is walked page by page from its start (:func:`kline_params` asks for a page, :func:`read_page` parses
  it and says where the next one starts).
- **Errors:** vendor exceptions are translated once (:mod:`adapters.binance.errors`); the sync client
  retries temporary ones under :class:`~adapters.binance.retry.RetryPolicy`, the ingestor under its own
  loop. Vendor exceptions never leave this package.
- **Parsing:** every array goes through :func:`models.kline.parse_rest_kline`, once.
- **Closed only** (sync client): a kline whose close time is not before the server's "now" is still open
  and dropped; the ingestor filters against the "now" it read itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from binance import AsyncClient
from binance.client import Client

from adapters.binance.endpoints import use_base_url
from adapters.binance.errors import VENDOR_ERRORS, translate_error
from adapters.binance.retry import RetryPolicy
from models.errors import KlineParseError, PermanentError
from models.kline import INTERVAL_MS, Kline, parse_rest_kline

log = logging.getLogger(__name__)

PAGE_LIMIT = 1000


def kline_params(symbol: str, interval: str, cursor: int, end_ms: int) -> dict[str, Any]:
    """``get_klines`` parameters of the page of ``[cursor, end_ms)``."""
    return {"symbol": symbol, "interval": interval, "startTime": cursor, "endTime": end_ms - 1, "limit": PAGE_LIMIT}


def read_page(
    rows: list[list[Any]], symbol: str, interval: str, start_ms: int, end_ms: int
) -> tuple[list[Kline], int | None]:
    """One response of ``[start_ms, end_ms)``: its parsed klines in the range, and the cursor of the next
    page (None when this page was the last: short or empty)."""
    try:
        page = [parse_rest_kline(row, symbol, interval) for row in rows]
    except KlineParseError as exc:
        raise PermanentError(f"REST klines of {symbol} unparseable: {exc}") from exc
    if len(page) < PAGE_LIMIT:
        cursor = None
    else:
        cursor = max(k.open_time for k in page) + INTERVAL_MS[interval]
        cursor = cursor if cursor < end_ms else None
    return [k for k in page if start_ms <= k.open_time < end_ms], cursor


class BinanceKlineClient:
    """Closed klines of Binance (or of ``base_url``, e.g. ``http://127.0.0.1:8900``) via python-binance.

    ``max_attempts`` bounds the tries per HTTP call; waits grow from ``backoff_s`` up to ``max_wait_s``,
    and a ``Retry-After`` longer than ``max_wait_s`` fails (the ban outlasts a sensible retry).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        max_wait_s: float = 60.0,
        client: Client | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.base_url = base_url
        self.retry = RetryPolicy(attempts=max_attempts, backoff_s=backoff_s, max_wait_s=max_wait_s, sleep=sleep)
        self.client = use_base_url(client or Client(ping=False, requests_params={"timeout": timeout_s}), base_url)

    def server_time_ms(self) -> int:
        """The server's clock (the simulator's replay clock), in ms."""
        return int(self.retry.call("GET /api/v3/time", self.client.get_server_time)["serverTime"])

    def iter_pages(self, symbol: str, start_ms: int, end_ms: int, interval: str = "1h") -> Iterator[list[Kline]]:
        """Pages (≤ 1000) of parsed klines with ``start_ms <= open_time < end_ms``, including open ones."""
        cursor: int | None = start_ms
        while cursor is not None and cursor < end_ms:
            params = kline_params(symbol, interval, cursor, end_ms)
            rows = self.retry.call(f"GET /api/v3/klines {symbol}", self.client.get_klines, **params)
            if not rows:
                return
            page, cursor = read_page(rows, symbol, interval, start_ms, end_ms)
            yield page

    def fetch_klines(
        self,
        symbol: str,
        start_ms: int,
        end_ms: int,
        interval: str = "1h",
        on_page: Callable[[int], None] | None = None,
    ) -> list[Kline]:
        """Every closed kline of ``symbol`` with ``start_ms <= open_time < end_ms``, in exchange order.

        ``on_page(n)`` is called with the number of klines of each page (for progress bars).
        """
        now = self.server_time_ms()
        klines: list[Kline] = []
        for page in self.iter_pages(symbol, start_ms, min(end_ms, now), interval):
            closed = [k for k in page if k.event_time < now]
            klines.extend(closed)
            if on_page is not None:
                on_page(len(closed))
        log.info("fetched symbol=%s rows=%d start=%d end=%d", symbol, len(klines), start_ms, end_ms)
        return klines


def fetch_klines(symbol: str, start_ms: int, end_ms: int, base_url: str | None = None) -> list[Kline]:
    """Closed klines of one symbol and range from Binance (or ``base_url``), with default retries."""
    return BinanceKlineClient(base_url).fetch_klines(symbol, start_ms, end_ms)


def make_async_client(base_url: str | None) -> AsyncClient:
    """An unauthenticated AsyncClient (market data needs no keys), rooted at ``base_url`` when given.

    ``AsyncClient.create()`` is not used: it pings binance.com before the root could be changed."""
    return use_base_url(AsyncClient(), base_url)


async def _translated(what: str, awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except VENDOR_ERRORS as exc:
        raise translate_error(exc, what) from exc


class BinanceRest:
    """:class:`~streaming.ingestor.KlineRest` over python-binance's AsyncClient (no retries of its own:
    the ingestor retries)."""

    def __init__(self, client: AsyncClient, interval: str = "1h") -> None:
        self.client = client
        self.interval = interval

    async def server_time(self) -> int:
        response = await _translated("GET /api/v3/time", self.client.get_server_time())
        return int(response["serverTime"])

    async def klines(self, symbol: str, start_ms: int, end_ms: int) -> list[Kline]:
        """Klines of ``symbol`` opened in ``[start_ms, end_ms]`` (all pages), oldest first."""
        out: list[Kline] = []
        cursor: int | None = start_ms
        while cursor is not None and cursor <= end_ms:
            params = kline_params(symbol, self.interval, cursor, end_ms + 1)
            rows = await _translated(f"GET /api/v3/klines {symbol}", self.client.get_klines(**params))
            page, cursor = read_page(rows, symbol, self.interval, start_ms, end_ms + 1)
            out.extend(page)
        return out
