"""Metrics, health, readiness and alerts of the long-running processes, wired from the settings.

- :func:`start_stream_ops` (``klinestream stream``): the stream's metrics and monitor
  (streaming/metrics.py, streaming/monitoring.py), the alert channels (adapters/alerting.py) and, unless
  ``KLINESTREAM_STREAM_METRICS_PORT=0``, ``/metrics`` ``/health`` ``/ready`` on that port; ready = Kafka,
  Cassandra and the registry (when the model comes from MLflow) answer and a model is loaded.
- :func:`start_ingestor_ops` (``klinestream ingest``): its metrics; ready = Kafka and the exchange answer.
- :func:`dashboard_ops` / :func:`simulator_ops`: the same routes on their own aiohttp apps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from adapters.ops_http import Check, OpsServer, Readiness, add_ops_routes, new_registry
from models.alerts import FanOutAlertSink
from models.credentials import KafkaPrincipal
from models.kline import HOUR_MS
from models.settings import Settings

log = logging.getLogger(__name__)
#: Hours of position rows read to seed the drawdown peak when a trader starts (a year).
PEAK_HOURS = 24 * 366


@dataclass
class TraderHolder:
    """The trader the stream runs now (``run_stream_restarting`` builds a new one after a failed batch)."""

    trader: Any = None
    controls: Any = None
    """adapters.cassandra.controls.CassandraControls on the trader's connection."""


@dataclass
class StreamOps:
    registry: CollectorRegistry
    alerts: FanOutAlertSink
    monitor: Any
    """streaming.monitoring.StreamMonitor: its ``alerts`` is the sink to give the record path."""
    server: OpsServer | None
    readiness: Readiness
    holder: TraderHolder = field(default_factory=TraderHolder)

    def track(self, trader: Any) -> Any:
        """Note ``trader`` as the running one and seed its drawdown peak from its position rows."""
        from adapters.cassandra.controls import CassandraControls

        self.holder.trader, self.holder.controls = trader, CassandraControls(trader.sink.db)
        try:
            from adapters.cassandra.reader import TradeReader

            # the last year of hours (a bounded read): drawdown is measured from the peak within it
            rows = TradeReader(trader.sink.db).read_hours(
                "positions", trader.config.trader_id, trader.symbol, limit=PEAK_HOURS, newest_first=True
            )
            if rows:
                self.monitor.metrics.seed_peak(trader.config.trader_id, trader.symbol, max(r["equity"] for r in rows))
        except Exception as exc:  # best effort: drawdown then starts from this run's peak
            log.warning("could not read the trader's equity peak: %s", exc)
        return trader

    def close(self) -> None:
        self.monitor.stop()
        if self.server is not None:
            self.server.close()
        else:
            self.readiness.stop()
        self.alerts.close()


def _running_trader(holder: TraderHolder) -> Any:
    if holder.trader is None:
        raise RuntimeError("no trader yet")
    return holder.trader


def _cassandra_check(holder: TraderHolder) -> Check:
    """Cassandra answers a query on the running trader's connection."""

    def check() -> None:
        _running_trader(holder).sink.db.ping()

    return check


def _model_check(holder: TraderHolder) -> Check:
    """The running trader has a model loaded."""

    def check() -> str:
        trader = _running_trader(holder)
        if getattr(trader, "policy", None) is None:
            raise RuntimeError("no model loaded")
        return f"model_version={trader.version}"

    return check


def start_stream_ops(settings: Settings, checkpoint_dir: Path, live: bool, registry_used: bool) -> StreamOps:
    """Metrics, monitor, readiness and the endpoint of a stream whose Spark checkpoint is ``checkpoint_dir``."""
    from adapters.alerting import build_alert_sink
    from adapters.kafka import EndOffsets, last_published_hours
    from adapters.mlflow.registry import ping_tracking_server
    from streaming.metrics import StreamMetrics
    from streaming.monitoring import KillSwitchState, MonitorConfig, MonitorSources, StreamMonitor
    from streaming.online_trader import TraderConfig
    from streaming.spark_job import committed_offsets

    registry = new_registry()
    alerts = build_alert_sink(settings)
    holder = TraderHolder()
    trader_id = TraderConfig.from_settings(settings).trader_id
    topic = settings.kafka_topic_klines

    def kill_switch() -> KillSwitchState:
        _running_trader(holder)
        return KillSwitchState(*holder.controls.kill_switch_status(trader_id))

    def last_closes() -> dict[str, int]:
        published = last_published_hours(settings, lookback=200, principal=KafkaPrincipal.STREAM)
        return {s: t + HOUR_MS - 1 for s, t in published.items()}

    config = MonitorConfig(trader_id, topic, live, settings.stale_after_minutes, settings.dead_letter_burst,
                           settings.dead_letter_burst_minutes, settings.daily_loss_limit, settings.alert_order_filled,
                           settings.kill_switch)  # fmt: skip
    ends = EndOffsets(settings, topic, KafkaPrincipal.STREAM)
    sources = MonitorSources(ends, lambda: committed_offsets(checkpoint_dir, topic), kill_switch, last_closes)
    monitor = StreamMonitor(config, StreamMetrics(registry), alerts, sources).start()
    checks: dict[str, Check] = {
        "kafka": _kafka_check(settings, topic, KafkaPrincipal.STREAM),
        "cassandra": _cassandra_check(holder),
        "model": _model_check(holder),
    }
    if registry_used:
        checks["registry"] = lambda: ping_tracking_server(settings.mlflow_tracking_uri)
    readiness = Readiness(checks, registry=registry)
    server = _serve(registry, readiness, settings.metrics_host, settings.stream_metrics_port)
    return StreamOps(registry, alerts, monitor, server, readiness, holder)


def _serve(registry: CollectorRegistry, readiness: Readiness, host: str, port: int) -> OpsServer | None:
    """Start the checks, and the endpoint on ``host:port`` unless ``port`` is 0."""
    if not port:
        readiness.start()
        return None
    return OpsServer(registry, readiness, host, port).start()


def _kafka_check(settings: Settings, topic: str, principal: KafkaPrincipal) -> Check:
    from adapters.kafka import EndOffsets

    ends = EndOffsets(settings, topic, principal)

    def check() -> str:
        return f"{topic} end offsets {ends()}"

    return check


@dataclass
class IngestorOps:
    registry: CollectorRegistry
    metrics: Any
    """streaming.metrics.IngestorMetrics"""
    server: OpsServer | None
    readiness: Readiness

    def watch(self, ingestor: Any) -> None:
        """Report the ingestor's connection counters when scraped."""
        self.metrics.connections.set_function(lambda: float(ingestor.connections))
        self.metrics.reconnects.set_function(lambda: float(ingestor.reconnects))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        else:
            self.readiness.stop()


def start_ingestor_ops(settings: Settings) -> IngestorOps:
    """The ingestor's metrics; ready = Kafka reachable and the exchange (Binance or the simulator) answers."""
    from adapters.binance.endpoints import ping_exchange
    from streaming.metrics import IngestorMetrics

    registry = new_registry()
    metrics = IngestorMetrics(registry)
    checks: dict[str, Check] = {
        "kafka": _kafka_check(settings, settings.kafka_topic_klines, KafkaPrincipal.INGESTOR),
        "exchange": lambda: ping_exchange(settings.binance_base_url),
    }
    readiness = Readiness(checks, registry=registry)
    server = _serve(registry, readiness, settings.metrics_host, settings.ingestor_metrics_port)
    return IngestorOps(registry, metrics, server, readiness)


def count_requests(app: web.Application, registry: CollectorRegistry) -> None:
    """``klinestream_http_requests_total{route, status}`` for every request ``app`` answers."""
    requests = Counter("klinestream_http_requests", "HTTP requests answered, by route and status",
                       ["route", "status"], registry=registry)  # fmt: skip

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            requests.labels(route, str(exc.status)).inc()
            raise
        requests.labels(route, str(response.status)).inc()
        return response

    app.middlewares.append(middleware)


def dashboard_ops(app: web.Application, db: Any) -> Readiness:
    """``/metrics``, ``/health``, ``/ready`` (Cassandra answers) on the dashboard's app; start the checks."""
    registry = new_registry()
    count_requests(app, registry)
    readiness = Readiness({"cassandra": db.ping}, registry=registry).start()
    add_ops_routes(app, registry, readiness)
    return readiness


def simulator_ops(app: web.Application, registry: CollectorRegistry) -> None:
    """``/metrics``, ``/health``, ``/ready`` (always ready: it serves files) on the simulator's app."""
    count_requests(app, registry)
    add_ops_routes(app, registry)
