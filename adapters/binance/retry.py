"""The one retry policy of Binance calls (tenacity), used by the kline client and the order client.

:class:`~models.errors.TemporaryError` is retried, up to ``attempts`` tries; a
:class:`~models.errors.PermanentError` fails at once. Waits grow exponentially from ``backoff_s`` (with
up to 25 % jitter) and are capped at ``max_wait_s``; a server's ``Retry-After`` is waited exactly, and
one longer than ``max_wait_s`` fails at once with a PermanentError (the ban outlasts a sensible retry:
hammering a rate-limited API on is what turns a 429 into a 418 ban). The websocket ingestor keeps its own
reconnect loop (streaming/ingestor.py) and shares only the error translation.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from adapters.binance.errors import VENDOR_ERRORS, translate_error
from models.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a Binance call is tried."""

    attempts: int = 6
    """Tries per call, the first one included."""
    backoff_s: float = 0.5
    """Wait after the first failure; doubles after each further one."""
    max_wait_s: float = 60.0
    """Longest wait between two tries; a longer ``Retry-After`` fails the call."""
    sleep: Callable[[float], None] | None = None
    """How to wait (``time.sleep`` when None; tests pass a recorder)."""

    def wait_s(self, state: RetryCallState) -> float:
        """Seconds before the next try: the server's ``Retry-After``, else the jittered backoff."""
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        backoff = self.backoff_s * 2 ** (state.attempt_number - 1)
        return min(self.max_wait_s, backoff * (1 + 0.25 * random.random()))

    def retrying(self, what: str) -> Retrying:
        """The tenacity ``Retrying`` of this policy for the call ``what`` (logged before each wait)."""
        return Retrying(
            retry=retry_if_exception_type(TemporaryError),
            stop=stop_after_attempt(self.attempts),
            wait=self.wait_s,
            reraise=True,
            before_sleep=lambda s: log.warning(
                "retrying %s after attempt %d: %s", what, s.attempt_number, s.outcome.exception() if s.outcome else ""
            ),
            sleep=self.sleep or time.sleep,
        )

    def call(self, what: str, function: Callable[..., Any], /, **params: Any) -> Any:
        """``function(**params)`` with vendor errors translated and temporary ones retried."""

        def attempt() -> Any:
            try:
                return function(**params)
            except VENDOR_ERRORS as exc:
                error = translate_error(exc, what)
                if isinstance(error, TemporaryError) and (error.retry_after or 0) > self.max_wait_s:
                    raise PermanentError(
                        f"{error}; Retry-After {error.retry_after:g} s exceeds {self.max_wait_s:g} s, try again later"
                    ) from exc
                raise error from exc

        return self.retrying(what)(attempt)
