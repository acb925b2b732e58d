"""The demo's live part: exchange simulator replaying the test range → ingestor → Kafka → Spark job →
online trader (the champion, learning online, paper orders) → Cassandra — the same library calls as
``klinestream simulator``, ``ingest`` and ``stream`` (and tests/integration/test_live_end_to_end.py),
run in this process: the simulator and the ingestor on their own event-loop threads, the Spark query
on the local Spark driver.

Each demo run is its own trader (``demo-<run id>``) on its own Kafka topics and Spark checkpoint, so a
re-run never resumes or doubles an earlier one; every row is keyed by trader, symbol and hour anyway.
Latency per hour = the moment the micro-batch that decided it returned (its decision, order and
position rows and the trader checkpoint written to Cassandra) − the Kafka timestamp of the last kline
of that hour (the record the ingestor appended last, which made the hour complete).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.credentials import KafkaPrincipal
from models.errors import KlinestreamError
from models.kline import HOUR_MS, Kline
from models.settings import Settings

log = logging.getLogger(__name__)

SEED_HOURS_BEFORE = 48
"""The replay's history: one kline per symbol this many hours before the start seeds the topic, and the
ingestor fills the hours in between from the simulator's REST klines (the policy's window needs them)."""


@dataclass
class LiveResult:
    trader_id: str
    topic: str
    expected_hours: int
    decided_hours: int
    latencies_ms: list[float] = field(default_factory=list)
    batches: int = 0
    wall_seconds: float = 0.0


class IngestorRunner:
    """``run_ingestor`` on its own event loop in a daemon thread; :meth:`stop` ends it cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="demo-ingestor", daemon=True)

    def _main(self) -> None:
        from streaming.ingestor import run_ingestor

        try:
            self._loop.run_until_complete(run_ingestor(self.settings, self._stop, 5))
        except Exception as exc:  # surfaced by the demo's wait loop
            self.error = exc
            log.error("ingestor failed: %s", exc)
        finally:
            self._loop.close()

    def start(self) -> IngestorRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


class HourClock:
    """``on_outcome`` of the Spark job: when each hour's decision became durable (wall clock, ms)."""

    def __init__(self) -> None:
        self.durable_ms: dict[int, float] = {}
        self.batches = 0
        self._lock = threading.Lock()

    def __call__(self, outcome: Any) -> None:
        now = time.time() * 1000.0
        result = outcome.trader_result
        with self._lock:
            self.batches += 1
            for decision in getattr(result, "decisions", ()) or ():
                self.durable_ms.setdefault(int(decision.open_time), now)


def seed_topic(settings: Settings, klines: list[Kline]) -> None:
    """Publish ``klines`` to the demo topic, as an earlier ingestor run would have left them."""
    from adapters.kafka import publish_klines

    publish_klines(settings, klines, "binance-ws", client_id="klinestream-demo-seed")


def klines_at(store: Any, symbols: tuple[str, ...], open_time: int) -> list[Kline]:
    from models.kline import parse_rest_kline
    from simulator.store import rest_array

    out = []
    for symbol in symbols:
        index = store.index_of(symbol, open_time)
        if index is None:
            raise KlinestreamError(f"the lake has no {symbol} kline at {open_time}: backfill the range first")
        out.append(parse_rest_kline(rest_array(store.row(symbol, index)), symbol))
    return out


def kafka_append_ms(settings: Settings, traded_hours: set[int]) -> dict[int, float]:
    """Per hour, the latest Kafka timestamp among the klines of that hour in the demo topic."""
    from kafka import KafkaConsumer, TopicPartition

    from adapters.kafka import client_config

    consumer = KafkaConsumer(**client_config(settings, KafkaPrincipal.WRITER, enable_auto_commit=False))
    latest: dict[int, float] = {}
    try:
        tp = TopicPartition(settings.kafka_topic_klines, 0)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek_to_beginning(tp)
        seen = 0
        while seen < end:
            batch = consumer.poll(timeout_ms=5000).get(tp, [])
            if not batch:
                break
            for message in batch:
                seen += 1
                hour = int(json.loads(message.value)["open_time"])
                if hour in traded_hours:
                    latest[hour] = max(latest.get(hour, 0.0), float(message.timestamp))
    finally:
        consumer.close()
    return latest


def latencies(durable: dict[int, float], appended: dict[int, float]) -> list[float]:
    return sorted(durable[h] - appended[h] for h in durable if h in appended)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def build_demo_trader(settings: Settings, trader_id: str) -> Any:
    """The online trader of ``klinestream stream`` (champion from MLflow, paper broker, Cassandra sink,
    kill switch), under the demo run's own trader id, learning online."""
    from adapters.mlflow.registry import MlflowModelSource
    from streaming.live_trader import start_live_trader
    from streaming.model_source import PollingModelSource

    source = PollingModelSource(MlflowModelSource(settings.mlflow_tracking_uri, settings.mlflow_model_name))
    return start_live_trader(settings, source, online=True, trader_id=trader_id)


def _wait_first_batch(clock: HourClock, query: Any, timeout: float) -> None:
    """Wait until the query has run its first micro-batch (the seed): Spark and the trader are warm."""
    deadline = time.monotonic() + timeout
    while clock.batches == 0:
        if not query.isActive:
            raise KlinestreamError(f"the Spark query stopped before its first micro-batch: {query.exception()}")
        if time.monotonic() > deadline:
            raise KlinestreamError(f"the Spark query ran no micro-batch within {timeout:.0f} s")
        time.sleep(0.2)


def wait_for_hours(
    trader: Any,
    settings: Settings,
    hours: list[int],
    timeout: float,
    ingestor: IngestorRunner,
    on_progress: Callable[[int], None],
) -> int:
    """Poll Cassandra until every hour of ``hours`` has its decision (or the timeout); returns how many do."""
    from adapters.cassandra.reader import TradeReader

    wanted, deadline, done = set(hours), time.monotonic() + timeout, 0
    reader = TradeReader(trader.sink.db)  # the trader's own connection (streaming/live_trader.py)
    while time.monotonic() < deadline:
        rows = reader.read("decisions", trader.config.trader_id, settings.traded_symbol)
        done = len({int(r["open_time"]) for r in rows} & wanted)
        on_progress(done)
        if done == len(wanted):
            return done
        if ingestor.error is not None:
            raise KlinestreamError(f"the ingestor stopped: {ingestor.error}")
        time.sleep(1.0)
    return done


def run_live(
    settings: Settings,
    run_id: str,
    replay: tuple[int, int],
    speed: float,
    work: Path,
    timeout: float,
    on_progress: Callable[[int, int], None],
    spark: Any = None,
) -> LiveResult:
    """Replay ``replay`` (ms, end excluded) through the whole live path; stop everything it started."""
    from adapters.kafka import build_producer, ensure_topics
    from simulator import KlineStore, ReplayClock, SimulatorServer
    from simulator.trading import PaperExchange
    from streaming.spark_job import StreamOptions, start_stream

    start, end = replay
    store = KlineStore.from_lake(settings.lake_root, settings.symbols, start - (SEED_HOURS_BEFORE + 24) * HOUR_MS, end)
    server = SimulatorServer(
        store,
        port=0,
        clock=ReplayClock(start_ms=start, speed=speed),
        exchange=PaperExchange(fee_rate=settings.fee_rate),
    ).start_in_thread()
    live = settings.model_copy(
        update={
            "kafka_topic_klines": f"demo.{run_id}.klines.1h",
            "trading_mode": "paper",
            "kafka_topic_dlq": f"demo.{run_id}.dlq",
            "binance_base_url": server.base_url,
            "binance_ws_url": server.ws_url,
        }
    )
    hours = list(range(start, end, HOUR_MS))
    result = LiveResult(f"demo-{run_id}", live.kafka_topic_klines, len(hours), 0)
    began = time.monotonic()
    own_spark = spark is None
    trader = query = producer = ingestor = None
    try:
        ensure_topics(live)
        seed_topic(live, klines_at(store, live.symbols, start - SEED_HOURS_BEFORE * HOUR_MS))
        trader = build_demo_trader(live, result.trader_id)
        if own_spark:
            from streaming.spark_session import build_spark_session

            spark = build_spark_session(live, "klinestream-demo")
        clock = HourClock()
        producer = build_producer(live, client_id=f"klinestream-demo-{run_id}-dlq", principal=KafkaPrincipal.STREAM)
        options = StreamOptions(name=f"demo-{run_id}", checkpoint_dir=work / "checkpoint")
        query = start_stream(spark, live, trader, options, producer, on_outcome=clock)
        _wait_first_batch(clock, query, timeout)
        server.clock = ReplayClock(start_ms=start, speed=speed)  # the replay starts now that the job is warm
        ingestor = IngestorRunner(live).start()
        result.decided_hours = wait_for_hours(
            trader, live, hours, timeout, ingestor, lambda done: on_progress(done, len(hours))
        )
        result.batches = clock.batches
        appended = kafka_append_ms(live, set(hours))
        result.latencies_ms = latencies({h: t for h, t in clock.durable_ms.items() if h in set(hours)}, appended)
    finally:
        result.wall_seconds = time.monotonic() - began
        _shutdown(query, ingestor, server, producer, trader, spark if own_spark else None)
        _delete_topics(live)
    if result.decided_hours == result.expected_hours:
        shutil.rmtree(work / "checkpoint", ignore_errors=True)  # this trader is never resumed (module docstring)
    return result


def _shutdown(query: Any, ingestor: IngestorRunner | None, server: Any, producer: Any, trader: Any, spark: Any) -> None:
    """Stop what the live part started, newest first; each step runs even if an earlier one failed."""
    steps: list[Callable[[], Any]] = []
    if query is not None:
        steps.append(query.stop)
    if ingestor is not None:
        steps.append(ingestor.stop)
    steps.append(server.stop_thread)
    if producer is not None:
        steps.append(producer.close)
    if trader is not None:
        steps.append(trader.sink.db.close)
    if spark is not None:
        steps.append(spark.stop)
    for step in steps:
        try:
            step()
        except Exception:  # keep stopping the rest; the failure is logged with its trace
            log.warning("demo shutdown step %s failed", getattr(step, "__qualname__", step), exc_info=True)


def _delete_topics(settings: Settings) -> None:
    """The run's topics served their purpose (the decisions are in Cassandra): delete them."""
    from kafka.errors import KafkaError

    from adapters.kafka import delete_topics

    try:
        delete_topics(settings, client_id="klinestream-demo")
    except KafkaError as exc:
        log.warning("could not delete demo topics %s: %s", settings.kafka_topic_klines, exc)
