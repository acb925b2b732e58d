"""Alerts: what the record path tells a person, through one small interface.

The stream's processor and the online trader emit :class:`Alert` records to an :class:`AlertSink` they are
given. The default sink, :class:`LoggingAlertSink`, logs each alert at WARNING or ERROR with stable fields
(``alert=<kind> severity=<severity> key=<key>``); a notification channel (Telegram, issue 15) is another
sink, plugged in where the stream is wired, without touching the record path.

An alert's ``key`` is derived from the data (kind plus source coordinates or hour), never from the clock,
so a micro-batch replayed after a crash emits the same keys and a sink can drop repeats. Emitting never
raises into the record path: :func:`emit` logs a failing sink and carries on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "error"]

#: The kinds of alert the record path emits: a kline or hour the trader set aside (decided as a hold), a
#: micro-batch that failed again and again and was dead-lettered, a second, different kline for an accepted
#: (symbol, hour), a run that accepted nothing, a kline whose time was far off the stream's clock.
RECORD_PATH_KINDS = ("quarantined_hour", "repeated_batch_failure", "conflicting_duplicate", "empty_run",
                     "clock_outlier")  # fmt: skip
#: The live monitor's (streaming/monitor.py): the champion trails its baselines over the window, the monitor
#: rolled it back (or could not), the shadow challenger failed a batch.
MONITOR_KINDS = ("champion_trailing", "champion_rolled_back", "shadow_failed")
#: The kinds the operations side emits (streaming/monitoring.py, the gate, the DAGs' failure callback): an
#: order filled (only with ``KLINESTREAM_ALERT_ORDER_FILLED``), the kill switch turned on or off, a trader's
#: daily-loss stop engaged, no kline of an hour N minutes after it closed, a burst of dead letters, a hot
#: swap of the model, a gate decision (promoted or rejected), the champion below the gate's baseline on the
#: newest holdout, a failed DAG run.
OPERATIONS_KINDS = ("order_filled", "kill_switch", "daily_loss_stop", "stale_data", "dead_letter_burst",
                    "model_swap", "gate_decision", "champion_below_baseline", "dag_failed")  # fmt: skip
ALERT_KINDS = RECORD_PATH_KINDS + MONITOR_KINDS + OPERATIONS_KINDS


@dataclass(frozen=True)
class Alert:
    """One thing a person should know about, with what they need to act on it."""

    kind: str
    """One of :data:`ALERT_KINDS`."""
    severity: Severity
    message: str
    """One line a person can read."""
    key: str
    """Deterministic identity (kind + what it is about): the same event replayed has the same key."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """JSON-able facts: source coordinates, both versions of a conflicting kline, the records quarantined…"""

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}; expected one of {ALERT_KINDS}")


class AlertSink(Protocol):
    """Where alerts go. ``emit`` should return quickly; a slow channel queues on its own side."""

    def emit(self, alert: Alert) -> None: ...


_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LoggingAlertSink:
    """The default sink: one log line per alert (``info`` → INFO, ``warning`` → WARNING, ``error`` → ERROR)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("klinestream.alerts")

    def emit(self, alert: Alert) -> None:
        level = _LEVELS[alert.severity]
        details = json.dumps(alert.details, sort_keys=True, default=str, separators=(",", ":"))
        self.logger.log(level, "alert=%s severity=%s key=%s %s details=%s", alert.kind, alert.severity, alert.key,
                        alert.message, details)  # fmt: skip


def emit(sink: AlertSink, alert: Alert) -> None:
    """Give ``alert`` to ``sink``; a sink that fails is logged, never raised into the record path."""
    try:
        sink.emit(alert)
    except Exception:
        log.exception("alert sink %s failed; alert=%s key=%s %s", type(sink).__name__, alert.kind, alert.key,
                      alert.message)  # fmt: skip


class FanOutAlertSink:
    """Gives every alert to each of ``sinks`` in turn (a failing one is logged and skipped, see :func:`emit`)."""

    def __init__(self, *sinks: AlertSink) -> None:
        self.sinks = sinks

    def emit(self, alert: Alert) -> None:
        for sink in self.sinks:
            emit(sink, alert)

    def close(self) -> None:
        """Close the sinks that can be closed (a channel that delivers from a queue flushes it first)."""
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                close()
