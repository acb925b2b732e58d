"""Fetching closed klines through python-binance, from Binance or a Binance-compatible base URL (the
exchange simulator).

- **Paging:** ``GET /api/v3/klines`` returns at most 1000 klines per call; a range is walked page by
  page from its start.
- **Retries:** HTTP 429 / 418 (rate limit, honouring ``Retry-After``), 5xx, timeouts and connection
  errors are :class:`~models.errors.TemporaryError` and retried with exponential backoff (tenacity);
  anything else (unknown symbol, bad parameters) is a :class:`~models.errors.PermanentError` and fails
  at once. Vendor exceptions never leave this module.
- **Parsing:** every array goes through :func:`models.kline.parse_rest_kline`, once.
- **Closed only:** a kline whose close time is not before the server's "now" is still open and dropped.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from models.errors import PermanentError, TemporaryError
from models.kline import INTERVAL_MS, Kline, parse_rest_kline

log = logging.getLogger(__name__)

PAGE_LIMIT = 1000
RETRYABLE_STATUS = (418, 429)


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def translate_error(exc: Exception, what: str) -> TemporaryError | PermanentError:
    """A python-binance / requests exception as a Klinestream error (raise it ``from exc``)."""
    if isinstance(exc, BinanceAPIException):
        status = exc.status_code
        if status in RETRYABLE_STATUS or status >= 500:
            reason = "rate limited" if status in RETRYABLE_STATUS else "server error"
            return TemporaryError(
                f"{what}: Binance {reason} (HTTP {status}, code {exc.code}): {exc.message}",
                retry_after=_retry_after(exc.response),
            )
        return PermanentError(
            f"{what}: Binance refused the request (HTTP {status}, code {exc.code}): {exc.message}; "
            "check the symbol, interval and time range"
        )
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return TemporaryError(f"{what}: {type(exc).__name__}: {exc}; is the Binance base URL reachable?")
    if isinstance(exc, BinanceRequestException):
        return TemporaryError(f"{what}: invalid response from Binance: {exc.message}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}")


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
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        self.client = client or Client(ping=False, requests_params={"timeout": timeout_s})
        if base_url:
            # python-binance builds every spot URL as API_URL + "/v3/..." (base_endpoint only picks
            # api1..api4.binance.com), so a compatible server is targeted by overriding API_URL.
            self.client.API_URL = base_url.rstrip("/") + "/api"

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        backoff = self.backoff_s * 2 ** (state.attempt_number - 1)
        return min(self.max_wait_s, backoff * (1 + 0.25 * random.random()))

    def _call(self, what: str, func: Callable[..., Any], **params: Any) -> Any:
        def attempt() -> Any:
            try:
                return func(**params)
            except (BinanceAPIException, BinanceRequestException, requests.RequestException) as exc:
                error = translate_error(exc, what)
                if isinstance(error, TemporaryError) and (error.retry_after or 0) > self.max_wait_s:
                    raise PermanentError(
                        f"{error}; Retry-After {error.retry_after:g} s exceeds {self.max_wait_s:g} s, try again later"
                    ) from exc
                raise error from exc

        retrying = Retrying(
            retry=retry_if_exception_type(TemporaryError),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            reraise=True,
            before_sleep=lambda s: log.warning(
                "retrying %s after attempt %d: %s", what, s.attempt_number, s.outcome.exception() if s.outcome else ""
            ),
            sleep=self._sleep or time.sleep,
        )
        return retrying(attempt)

    def server_time_ms(self) -> int:
        """The server's clock (the simulator's replay clock), in ms."""
        return int(self._call("GET /api/v3/time", self.client.get_server_time)["serverTime"])

    def iter_pages(self, symbol: str, start_ms: int, end_ms: int, interval: str = "1h") -> Iterator[list[Kline]]:
        """Pages (≤ 1000) of parsed klines with ``start_ms <= open_time < end_ms``, including open ones."""
        step = INTERVAL_MS[interval]
        cursor = start_ms
        while cursor < end_ms:
            rows = self._call(
                f"GET /api/v3/klines {symbol}",
                self.client.get_klines,
                symbol=symbol,
                interval=interval,
                startTime=cursor,
                endTime=end_ms - 1,
                limit=PAGE_LIMIT,
            )
            if not rows:
                return
            page = [parse_rest_kline(row, symbol, interval) for row in rows]
            page = [k for k in page if start_ms <= k.open_time < end_ms]
            yield page
            last = max(int(row[0]) for row in rows)
            if len(rows) < PAGE_LIMIT:
                return
            cursor = last + step

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
