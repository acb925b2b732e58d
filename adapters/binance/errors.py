"""The one translation of Binance-side failures into Klinestream errors (freqtrade's rule: vendor errors
are translated at the boundary, ``raise translate_error(exc, what) from exc``; callers see only
:class:`~models.errors.TemporaryError` and :class:`~models.errors.PermanentError`).

- **Temporary** (retry with backoff): HTTP 429 / 418 (rate limit or ban, with the server's
  ``Retry-After`` in seconds) and 5xx, an invalid response body, timeouts and network errors of
  requests (sync REST), aiohttp (async REST) and websockets (kline stream).
- **Permanent** (fail at once): every other HTTP status (unknown symbol, bad parameters, bad keys,
  unknown order), other requests errors (bad URL), anything unknown.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import requests
from binance.exceptions import BinanceAPIException, BinanceRequestException, ReadLoopClosed
from websockets.exceptions import WebSocketException

from models.errors import PermanentError, TemporaryError

#: HTTP statuses of a rate limit (429) and of an IP ban for ignoring it (418); 5xx are retried too.
RETRYABLE_STATUS = (418, 429)

#: Every exception a python-binance call may raise (its own, requests', aiohttp's, websockets').
VENDOR_ERRORS: tuple[type[BaseException], ...] = (
    BinanceAPIException,
    BinanceRequestException,
    ReadLoopClosed,
    requests.RequestException,
    aiohttp.ClientError,
    WebSocketException,
    TimeoutError,
    OSError,
)


def retry_after(response: Any) -> float | None:
    """The ``Retry-After`` header of an HTTP response in seconds, or None."""
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def translate_error(exc: BaseException, what: str) -> TemporaryError | PermanentError:
    """``exc`` (python-binance, requests, aiohttp, websockets) as a Klinestream error; raise it ``from exc``.

    ``what`` names the call (``GET /api/v3/klines BTCUSDT``). The message never carries keys:
    python-binance puts none in its exceptions' text."""
    if isinstance(exc, BinanceAPIException):
        status = exc.status_code
        if status in RETRYABLE_STATUS or status >= 500:
            reason = "rate limited" if status in RETRYABLE_STATUS else "server error"
            return TemporaryError(
                f"{what}: Binance {reason} (HTTP {status}, code {exc.code}): {exc.message}",
                retry_after=retry_after(exc.response),
            )
        return PermanentError(f"{what}: Binance refused the request (HTTP {status}, code {exc.code}): {exc.message}")
    if isinstance(exc, BinanceRequestException):
        return TemporaryError(f"{what}: invalid response from Binance: {exc.message}")
    if isinstance(exc, requests.RequestException) and not isinstance(exc, requests.Timeout | requests.ConnectionError):
        return PermanentError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, VENDOR_ERRORS):
        return TemporaryError(f"{what}: {type(exc).__name__}: {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}")
