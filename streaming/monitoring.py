"""The stream's watch: metrics and alerts from each micro-batch, and a poll of what no batch says.

:class:`StreamMonitor` is the Spark job's ``on_outcome`` callback and a daemon thread:

- **per micro-batch** (:meth:`on_outcome`, after the trader's rows are durable): the metrics
  (streaming/metrics.py) and the alerts a batch can raise — a trader's **daily-loss stop** engaged (the
  last position is ``daily_loss_limit`` below the UTC day's start, or a buy was refused by it; one alert per
  trader and day), a **model swap**, a **dead-letter burst** (``dead_letter_burst`` records within
  ``dead_letter_burst_minutes``; re-armed once the window is empty), an **order filled** (only with
  ``alert_order_filled``);
- **every few seconds** (:meth:`poll`, on its own thread, never in the record path): **Kafka consumer lag**
  (the topic's end offsets − the offsets Spark committed), the **kill switch** (an alert when it turns on or
  off, and at start when it is on), and **stale data** on a live stream: no kline of a symbol's next hour
  ``stale_after_minutes`` after that hour closed (one alert per symbol and missing hour).

Every alert key is derived from the data (trader, day, hour, version, record coordinates), and the monitor
sends each key once, so a replayed micro-batch or a condition seen on every poll gives one message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from models.alerts import Alert, AlertSink, emit
from models.kline import HOUR_MS
from models.records import PositionRecord
from streaming.metrics import StreamMetrics
from streaming.micro_batch import BatchOutcome
from streaming.risk import DAILY_LOSS

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


@dataclass(frozen=True)
class KillSwitchState:
    active: bool
    reason: str | None = None
    updated_at_ms: int | None = None


@dataclass(frozen=True)
class MonitorConfig:
    trader_id: str
    topic: str
    live: bool = True
    """Watch for stale klines (a replay's klines are old by design)."""
    stale_after_minutes: float = 15.0
    dead_letter_burst: int = 20
    dead_letter_burst_minutes: float = 10.0
    daily_loss_limit: float = 10_000.0
    alert_order_filled: bool = False
    kill_switch_setting: bool = False
    """``KLINESTREAM_KILL_SWITCH``: on for the whole run."""


@dataclass(frozen=True)
class MonitorSources:
    """Where the poll reads what batches do not say; any may be None (not watched)."""

    end_offsets: Callable[[], Mapping[int, int]] | None = None
    committed_offsets: Callable[[], Mapping[int, int]] | None = None
    kill_switch: Callable[[], KillSwitchState] | None = None
    last_closes: Callable[[], Mapping[str, int]] | None = None
    """Close time (ms) of the newest kline of each symbol already in Kafka, read once (stale data at start)."""


class CountingAlertSink:
    """Counts alerts by kind in ``klinestream_alerts_total`` and passes them on."""

    def __init__(self, metrics: StreamMetrics, sink: AlertSink) -> None:
        self.metrics, self.sink = metrics, sink

    def emit(self, alert: Alert) -> None:
        self.metrics.alerts.labels(alert.kind).inc()
        emit(self.sink, alert)


class StreamMonitor:
    """See the module docstring. ``clock`` returns epoch seconds."""

    def __init__(self, config: MonitorConfig, metrics: StreamMetrics, alerts: AlertSink,
                 sources: MonitorSources | None = None, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.config, self.metrics, self.sources, self.clock = config, metrics, sources or MonitorSources(), clock
        self.alerts = CountingAlertSink(metrics, alerts)
        metrics.daily_loss_limit.set(config.daily_loss_limit)
        self._sent: set[str] = set()
        self._burst: deque[tuple[float, int, str]] = deque()
        self._burst_active = False
        self._kill: KillSwitchState | None = None
        self._seeded = False
        self._failing: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- alerts ----------------------------------------------------------------------------------
    def _alert(self, kind: str, severity: str, message: str, key: str, **details: object) -> None:
        if key in self._sent:
            return
        self._sent.add(key)
        emit(self.alerts, Alert(kind, severity, message, key, details))  # type: ignore[arg-type]

    # --- per micro-batch -------------------------------------------------------------------------
    def on_outcome(self, outcome: BatchOutcome) -> None:
        """The Spark job's ``on_outcome``: metrics and the alerts of one micro-batch."""
        self.metrics.observe(outcome)
        self._watch_dead_letters(outcome)
        result = outcome.trader_result
        if result is None or getattr(result, "skipped", True):
            return
        trader = self.config.trader_id
        if result.swapped_from is not None:
            self._alert("model_swap", "info", f"{trader} now trades model version {result.model_version} "
                        f"(was {result.swapped_from})", f"model_swap:{trader}:{result.swapped_from}:"
                        f"{result.model_version}:{outcome.batch_id}", trader_id=trader,
                        from_version=result.swapped_from, model_version=result.model_version)  # fmt: skip
        for order in result.orders:
            if order.reason == DAILY_LOSS:
                self._daily_loss(order.trader_id, order.open_time, f"a {order.side} was refused")
            if order.status == "filled" and self.config.alert_order_filled:
                self._alert("order_filled", "info", f"{order.trader_id} {order.side} {order.filled_quantity:g} "
                            f"{order.symbol} at {order.fill_price:g} (fee {order.fee:g})",
                            f"order_filled:{order.client_order_id}", trader_id=order.trader_id,
                            client_order_id=order.client_order_id, model_version=order.model_version)  # fmt: skip
        if result.position is not None and self._past_daily_limit(result.position):
            p = result.position
            self._daily_loss(p.trader_id, p.open_time, f"equity {p.equity:,.2f} vs {p.day_start_equity:,.2f} at the "
                             "day's start")  # fmt: skip

    def _past_daily_limit(self, position: PositionRecord) -> bool:
        return position.day_start_equity - position.equity >= self.config.daily_loss_limit

    def _daily_loss(self, trader_id: str, open_time: int, why: str) -> None:
        day = datetime.fromtimestamp(open_time // DAY_MS * 86_400, UTC).date().isoformat()
        self._alert("daily_loss_stop", "warning", f"{trader_id}: daily-loss stop engaged for {day} UTC ({why}); "
                    f"no buy until the next UTC day (limit {self.config.daily_loss_limit:,.2f})",
                    f"daily_loss_stop:{trader_id}:{day}", trader_id=trader_id, day=day)  # fmt: skip

    def _watch_dead_letters(self, outcome: BatchOutcome) -> None:
        now = self.clock()
        window = self.config.dead_letter_burst_minutes * 60
        if outcome.dlq:
            first = outcome.dlq[0]
            self._burst.append((now, len(outcome.dlq), f"{first.topic}/{first.partition}/{first.offset}"))
        while self._burst and self._burst[0][0] < now - window:
            self._burst.popleft()
        if not self._burst:
            self._burst_active = False
            return
        total = sum(n for _, n, _ in self._burst)
        if total >= self.config.dead_letter_burst and not self._burst_active:
            self._burst_active = True
            reasons = Counter(r.reason.split(":", 1)[0] for r in outcome.dlq)
            minutes = self.config.dead_letter_burst_minutes
            self._alert("dead_letter_burst", "error", f"{total} records dead-lettered within {minutes:g} min "
                        f"(threshold {self.config.dead_letter_burst}); latest reasons: "
                        f"{', '.join(f'{r} x{n}' for r, n in reasons.most_common(5))}",
                        f"dead_letter_burst:{self._burst[0][2]}", records=total,
                        first=self._burst[0][2])  # fmt: skip

    # --- poll ------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Lag, kill switch, stale data (each part on its own: one failing does not stop the others)."""
        for part in (self._poll_lag, self._poll_kill_switch, self._poll_stale):
            name = part.__name__.removeprefix("_poll_")
            try:
                part()
                self._failing.discard(name)
            except Exception as exc:  # a service is away: the readiness checks say so; try again next poll
                level = logging.DEBUG if name in self._failing else logging.WARNING
                self._failing.add(name)
                log.log(level, "monitor could not read %s: %s", name, exc)

    def _poll_lag(self) -> None:
        end, committed = self.sources.end_offsets, self.sources.committed_offsets
        if end is None or committed is None:
            return
        ends, done = end(), committed()
        for partition, offset in ends.items():
            lag = max(0, offset - done.get(partition, 0))
            self.metrics.lag.labels(self.config.topic, str(partition)).set(lag)

    def _poll_kill_switch(self) -> None:
        read = self.sources.kill_switch
        state = read() if read is not None else KillSwitchState(False)
        if self.config.kill_switch_setting:
            state = KillSwitchState(True, "KLINESTREAM_KILL_SWITCH=true", 0)
        trader = self.config.trader_id
        self.metrics.kill_switch.labels(trader).set(1.0 if state.active else 0.0)
        before, self._kill = self._kill, state
        if (before is None and not state.active) or (before is not None and before.active == state.active):
            return
        word = "ON: new orders stopped" if state.active else "off: orders allowed again"
        self._alert("kill_switch", "warning" if state.active else "info",
                    f"kill switch {word} for {trader} (reason: {state.reason or '-'})",
                    f"kill_switch:{trader}:{'on' if state.active else 'off'}:{state.updated_at_ms or 0}",
                    trader_id=trader, reason=state.reason)  # fmt: skip

    def _poll_stale(self) -> None:
        if not self.config.live:
            return
        if not self._seeded and self.sources.last_closes is not None:
            for symbol, close_ms in self.sources.last_closes().items():
                self.metrics.kline_ages.saw(symbol, close_ms)
        self._seeded = True
        now_ms = int(self.clock() * 1000)
        grace = int(self.config.stale_after_minutes * 60_000)
        for symbol, close_ms in self.metrics.kline_ages.latest().items():
            missing_open = close_ms + 1  # the next hour's open time
            if now_ms > missing_open + HOUR_MS + grace:
                at = datetime.fromtimestamp(missing_open / 1000, UTC).strftime("%Y-%m-%d %H:%M")
                self._alert("stale_data", "error", f"no {symbol} kline for the hour {at} UTC "
                            f"{(now_ms - missing_open - HOUR_MS) / 60_000:.0f} min after it closed",
                            f"stale_data:{symbol}:{missing_open}", symbol=symbol, open_time=missing_open)  # fmt: skip

    def start(self, interval: float = 5.0) -> StreamMonitor:
        def loop() -> None:
            while not self._stop.is_set():
                self.poll()
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="stream-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
