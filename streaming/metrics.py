"""The stream's Prometheus metrics, updated from what each micro-batch returned (never inside the trader).

:meth:`StreamMetrics.observe` reads a :class:`~streaming.micro_batch.BatchOutcome` — its records, dead
letters, and the trader's :class:`~streaming.online_trader.BatchResult` (decisions, orders, the last position
row, the online loss) — after the trader has made its rows durable and checkpointed, so the metrics cost the
record path nothing before the decision is durable (bench/streaming.py ``--metrics`` measures the rest).

Counters count since the process started (Prometheus' ``rate()`` and ``increase()`` handle restarts); the
gauges are the values of the newest rows: ``klinestream_equity`` is the ``equity`` of the last position row
the trader wrote. Latency of a decision = Kafka append time (the record's timestamp) of the newest kline of
its hour → the moment the batch's decision, order and position rows were durable in Cassandra.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapters.ops_http import KlineAges
from models.kline import HOUR_MS
from models.records import DecisionRecord, OrderRecord, PositionRecord
from streaming.micro_batch import BatchOutcome
from streaming.risk import DAILY_LOSS, INSUFFICIENT_CASH, KILL_SWITCH, MAX_NOTIONAL, MAX_POSITION

#: Rejection reasons that are a risk limit refusing a real order (the others say there was nothing to trade).
RISK_REASONS = frozenset({KILL_SWITCH, DAILY_LOSS, MAX_POSITION, MAX_NOTIONAL, INSUFFICIENT_CASH})
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 10800.0)
BATCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_KEEP_HOURS = 24 * 7


class StreamMetrics:
    """The metric families of ``klinestream stream`` on ``registry`` (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.batch_seconds = Histogram("klinestream_micro_batch_duration_seconds",
                                       "Wall time of a micro-batch on the driver, collect included",
                                       buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.latency = Histogram("klinestream_decision_latency_seconds",
                                 "Kafka append of the newest kline of an hour -> its decision durable in Cassandra",
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.batches = Counter("klinestream_micro_batches", "Micro-batches processed", registry=r)
        self.records = Counter("klinestream_kafka_records", "Kafka records read, by outcome", ["outcome"], registry=r)
        self.dead_letters = Counter("klinestream_dead_letters", "Records sent to the DLQ, by reason code", ["reason"],
                                    registry=r)  # fmt: skip
        labels = ["trader_id", "symbol"]
        self.decisions = Counter("klinestream_decisions", "Decisions, by action", [*labels, "action"], registry=r)
        self.orders = Counter("klinestream_orders", "Orders, by final status and reason ('' when none)",
                              [*labels, "side", "status", "reason"], registry=r)  # fmt: skip
        self.risk_trips = Counter("klinestream_risk_limit_trips", "Orders refused by a risk limit, by reason",
                                  [*labels, "reason"], registry=r)  # fmt: skip
        self.equity = Gauge("klinestream_equity", "Equity (quote asset) of the last position row", labels, registry=r)
        self.cash = Gauge("klinestream_cash", "Cash (quote asset) of the last position row", labels, registry=r)
        self.position = Gauge("klinestream_position_units", "Base units held (last position row)", labels, registry=r)
        self.day_start = Gauge("klinestream_day_start_equity", "Equity at the first decision of the UTC day", labels,
                               registry=r)  # fmt: skip
        self.daily_loss_limit = Gauge("klinestream_daily_loss_limit", "The daily-loss stop's limit (quote asset)",
                                      registry=r)  # fmt: skip
        self.buy_hold = Gauge("klinestream_buy_hold_equity", "Buy-and-hold equity at the same close", labels,
                              registry=r)  # fmt: skip
        self.drawdown = Gauge("klinestream_drawdown_ratio", "1 - equity / the highest equity of the trader", labels,
                              registry=r)  # fmt: skip
        self.model = Gauge("klinestream_model_info", "1 for the model version the trader trades", ["trader_id",
                           "model_version"], registry=r)  # fmt: skip
        self.online_updates = Gauge("klinestream_online_updates", "Online gradient steps of the traded version",
                                    ["trader_id"], registry=r)  # fmt: skip
        self.online_loss = Gauge("klinestream_online_loss", "Huber loss of the latest online gradient step",
                                 ["trader_id"], registry=r)  # fmt: skip
        self.swaps = Counter("klinestream_model_swaps", "Hot swaps of the traded model", ["trader_id"], registry=r)
        self.kill_switch = Gauge("klinestream_kill_switch", "1 while the kill switch stops the trader's orders",
                                 ["trader_id"], registry=r)  # fmt: skip
        self.lag = Gauge("klinestream_kafka_consumer_lag", "Topic end offset - the stream's committed offset",
                         ["topic", "partition"], registry=r)  # fmt: skip
        self.alerts = Counter("klinestream_alerts", "Alerts emitted, by kind", ["kind"], registry=r)
        self.kline_ages = KlineAges(r)
        self._peaks: dict[tuple[str, str], float] = {}
        self._versions: dict[str, str] = {}
        self._appended: dict[int, int] = {}
        """open_time → Kafka timestamp (ms) of the newest record of that hour seen."""
        self._lock = threading.Lock()

    def observe(self, outcome: BatchOutcome) -> None:
        """Count one micro-batch (see the module docstring)."""
        self.batches.inc()
        self.batch_seconds.observe(outcome.seconds)
        self.records.labels("accepted").inc(outcome.accepted)
        self.records.labels("dead_lettered").inc(len(outcome.dlq))
        for record in outcome.dlq:
            self.dead_letters.labels(record.reason.split(":", 1)[0]).inc()
        for item in outcome.accepted_items:
            k = item.kline
            self.kline_ages.saw(k.symbol, k.event_time)
            if item.record.timestamp_ms > self._appended.get(k.open_time, -1):
                self._appended[k.open_time] = item.record.timestamp_ms
        result = outcome.trader_result
        if result is None or getattr(result, "skipped", True):
            return
        self._observe_decisions(result.decisions, result.rows_durable_at, outcome)
        self._observe_orders(result.orders)
        trader_id = result.decisions[-1].trader_id if result.decisions else None
        if trader_id is not None:
            self.use_version(trader_id, result.model_version)
            self.online_updates.labels(trader_id).set(result.online_updates)
            if result.loss is not None:
                self.online_loss.labels(trader_id).set(result.loss)
            if result.swapped_from is not None:
                self.swaps.labels(trader_id).inc()
        if result.position is not None:
            self.observe_position(result.position)

    def _observe_decisions(self, decisions: Iterable[DecisionRecord], durable_at: float | None,
                           outcome: BatchOutcome) -> None:  # fmt: skip
        fallback = min((i.record.timestamp_ms for i in outcome.accepted_items), default=None)
        newest = None
        for decision in decisions:
            self.decisions.labels(decision.trader_id, decision.symbol, decision.action_name).inc()
            appended = self._appended.get(decision.open_time, fallback)
            if durable_at is not None and appended is not None:
                self.latency.observe(max(0.0, durable_at - appended / 1000.0))
            newest = decision.open_time
        if newest is not None:  # the hours decided are done: forget what is older than a week before them
            oldest = newest - _KEEP_HOURS * HOUR_MS
            self._appended = {h: t for h, t in self._appended.items() if h >= oldest}

    def _observe_orders(self, orders: Iterable[OrderRecord]) -> None:
        for order in orders:
            reason = order.reason or ""
            self.orders.labels(order.trader_id, order.symbol, order.side, order.status, reason).inc()
            if order.status == "rejected" and reason in RISK_REASONS:
                self.risk_trips.labels(order.trader_id, order.symbol, reason).inc()

    def observe_position(self, position: PositionRecord) -> None:
        key = (position.trader_id, position.symbol)
        with self._lock:
            peak = max(self._peaks.get(key, position.equity), position.equity)
            self._peaks[key] = peak
        self.equity.labels(*key).set(position.equity)
        self.cash.labels(*key).set(position.cash)
        self.position.labels(*key).set(position.units)
        self.buy_hold.labels(*key).set(position.buy_hold_equity)
        self.day_start.labels(*key).set(position.day_start_equity)
        self.drawdown.labels(*key).set(1.0 - position.equity / peak if peak > 0 else 0.0)

    def seed_peak(self, trader_id: str, symbol: str, peak: float) -> None:
        """The highest equity the trader ever had (from its position rows), so drawdown survives a restart."""
        with self._lock:
            self._peaks[(trader_id, symbol)] = max(peak, self._peaks.get((trader_id, symbol), peak))

    def use_version(self, trader_id: str, version: str) -> None:
        """``klinestream_model_info{model_version=version} 1``; the previous version's series is removed."""
        with self._lock:
            previous = self._versions.get(trader_id)
            self._versions[trader_id] = version
        if previous is not None and previous != version:
            self.model.remove(trader_id, previous)
        self.model.labels(trader_id, version).set(1)


class IngestorMetrics:
    """The ingestor's metrics: klines made durable in Kafka by symbol and source, the age of the newest kline of
    each symbol, and (read when scraped) its connections and python-binance's own reconnections."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter("klinestream_ingested_klines", "Closed klines durable in Kafka, by source",
                                 ["symbol", "source"], registry=registry)  # fmt: skip
        self.kline_ages = KlineAges(registry)
        self.connections = Gauge("klinestream_ingestor_connections", "Kline stream connections opened",
                                 registry=registry)  # fmt: skip
        self.reconnects = Gauge("klinestream_ingestor_reconnects", "Reconnections python-binance made by itself",
                                registry=registry)  # fmt: skip

    def published_klines(self, klines: Iterable[tuple[str, int, str]]) -> None:
        """``(symbol, close_time, source)`` of klines the sink has made durable."""
        for symbol, close_time, source in klines:
            self.published.labels(symbol, source).inc()
            self.kline_ages.saw(symbol, close_time)
