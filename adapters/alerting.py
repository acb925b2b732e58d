"""The alert channels of a process, from the settings: the log always, Telegram when a bot token is set.

Built once at an entry point (``klinestream stream``/``ingest``, the gate, a DAG's failure callback) and
passed down as the :class:`~models.alerts.AlertSink` the record path and the monitors emit to; ``close()`` it
at the end so queued Telegram messages are delivered.
"""

from __future__ import annotations

from models.alerts import AlertSink, FanOutAlertSink, LoggingAlertSink
from models.settings import Settings


def build_alert_sink(settings: Settings) -> FanOutAlertSink:
    """The log, plus Telegram (every chat of ``KLINESTREAM_TELEGRAM_CHAT_IDS``) when a token is set."""
    sinks: list[AlertSink] = [LoggingAlertSink()]
    token = settings.telegram_bot_token
    if token is not None:
        from adapters.telegram.sink import TelegramAlertSink

        sinks.append(TelegramAlertSink(token.get_secret_value(), settings.telegram_chat_ids,
                                       settings.telegram_api_url))  # fmt: skip
    return FanOutAlertSink(*sinks)
