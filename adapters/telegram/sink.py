"""Alerts to Telegram: an :class:`~models.alerts.AlertSink` that sends each alert to the allowed chats.

``emit`` only puts the alert on a queue (it is called from the record path and must return at once); a daemon
thread with its own event loop sends it with python-telegram-bot's ``Bot.send_message`` (retrying network
errors and Telegram's ``RetryAfter``). An alert whose key was already sent is dropped: the keys are
deterministic, so a micro-batch replayed after a crash, or a monitor that sees the same condition on every
poll, sends one message. ``close()`` delivers what is queued (a DAG callback's process ends right after) and
stops the thread.

The token is registered with :func:`adapters.telegram.redact.redact_in_logs` before the library sees it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Sequence

from telegram import Bot
from telegram.error import Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from adapters.telegram.redact import redact_in_logs
from models.alerts import Alert

log = logging.getLogger(__name__)

_ICONS = {"info": "ℹ️", "warning": "⚠️", "error": "🚨"}
MAX_TEXT = 4000
"""Telegram refuses messages over 4,096 characters."""


def bot_api_base(api_url: str) -> str:
    """python-telegram-bot's ``base_url`` for a Bot API root such as ``https://api.telegram.org``."""
    return f"{api_url.rstrip('/')}/bot"


def make_bot(token: str, api_url: str, timeout: float = 10.0) -> Bot:
    """A :class:`telegram.Bot` on ``api_url`` (the real API or a stand-in), its token kept out of the logs."""
    redact_in_logs(token)
    request = HTTPXRequest(connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)
    return Bot(token, base_url=bot_api_base(api_url), request=request)


def alert_text(alert: Alert) -> str:
    """The message of one alert: icon, kind and the line a person reads, then the key facts."""
    lines = [f"{_ICONS.get(alert.severity, '')} {alert.kind.replace('_', ' ')}".strip(), alert.message]
    facts = {k: v for k, v in alert.details.items() if isinstance(v, str | int | float | bool) or v is None}
    if facts:
        lines.append(json.dumps(facts, sort_keys=True, default=str, separators=(", ", ": ")))
    return "\n".join(lines)[:MAX_TEXT]


class TelegramAlertSink:
    """Sends alerts to ``chat_ids`` through the Bot API at ``api_url`` (see the module docstring)."""

    def __init__(self, token: str, chat_ids: Sequence[int], api_url: str = "https://api.telegram.org",
                 attempts: int = 4, remember: int = 4096) -> None:  # fmt: skip
        if not chat_ids:
            raise ValueError("a Telegram alert sink needs at least one chat id")
        self.chat_ids, self.attempts, self.remember = tuple(chat_ids), attempts, remember
        self.bot = make_bot(token, api_url)
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="telegram-alerts", daemon=True)
        self._thread.start()

    def emit(self, alert: Alert) -> None:
        with self._lock:
            if alert.key in self._seen:
                return
            self._seen[alert.key] = None
            while len(self._seen) > self.remember:
                self._seen.popitem(last=False)
        self._queue.put(alert)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued alert was sent (or given up); False on timeout."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued, then stop the delivery thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._deliver())

    async def _deliver(self) -> None:
        try:
            while True:
                alert = await asyncio.to_thread(self._queue.get)
                try:
                    if alert is None:
                        return
                    text = alert_text(alert)
                    for chat_id in self.chat_ids:
                        await self._send(chat_id, text, alert)
                finally:
                    self._queue.task_done()
        finally:
            await self.bot.shutdown()

    async def _send(self, chat_id: int, text: str, alert: Alert) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                await self.bot.send_message(chat_id, text, disable_web_page_preview=True)
                self.sent += 1
                return
            except RetryAfter as exc:
                wait = exc.retry_after if isinstance(exc.retry_after, int | float) else 5.0
                await asyncio.sleep(min(float(wait), 60.0))
            except (InvalidToken, Forbidden) as exc:  # permanent: the token or the chat is wrong
                log.error("telegram refused the alert alert=%s key=%s chat_id=%s: %s", alert.kind, alert.key,
                          chat_id, exc)  # fmt: skip
                break
            except NetworkError as exc:
                log.warning("telegram unreachable attempt=%d alert=%s: %s", attempt, alert.kind, exc)
                await asyncio.sleep(min(0.5 * 2**attempt, 10.0))
            except TelegramError as exc:
                log.error("telegram error alert=%s key=%s: %s", alert.kind, alert.key, exc)
                break
        self.failed += 1
        log.error("alert not delivered to telegram alert=%s key=%s chat_id=%s", alert.kind, alert.key, chat_id)
