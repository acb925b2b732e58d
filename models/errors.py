"""Klinestream's exception tree.

Temporary errors (worth a retry with backoff) are separated from permanent ones (fail fast). Vendor
errors are translated at the boundary with ``raise ... from e`` so that callers only see these types.
"""

from __future__ import annotations


class KlinestreamError(Exception):
    """Base class of every error Klinestream raises on purpose."""


class SettingsError(KlinestreamError):
    """A setting is missing or invalid; the message names the environment variable."""


class TemporaryError(KlinestreamError):
    """A failure that may go away: rate limit, 5xx, timeout, broker unavailable. Retry with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(KlinestreamError):
    """A failure that will not go away by retrying: bad request, unknown symbol, bad credentials."""


class KlineParseError(PermanentError):
    """A raw kline (REST array, websocket message, file row, Kafka record) could not be parsed."""


class ValidationFailed(PermanentError):
    """A kline partition failed its expectation suite; ``report`` is the readable report."""

    def __init__(self, message: str, report: str = "") -> None:
        super().__init__(message)
        self.report = report


class ServiceError(KlinestreamError):
    """A local service of the stack failed to start or is unhealthy."""


class TradingSafetyError(PermanentError):
    """A trading-mode or risk setting refuses to let the platform trade (for example live without consent)."""
