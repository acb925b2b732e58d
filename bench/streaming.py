"""Streaming latency and replay throughput: Kafka append → decision and order durable in Cassandra.

    .venv/bin/python bench/streaming.py [--live-hours 30] [--pace 1.0] [--replay-from 2022-01-01]
                                        [--max-offsets 10000] [--data-dir ../shared/data/binance_spot_1h]

Needs Kafka and Cassandra running (``klinestream stack up kafka cassandra``) and the Spark connector jars
(``klinestream stack install``). For each of online learning on and off:

- **live pace**: the streaming query runs with the ``klinestream stream`` defaults (0.05 s processing-time
  trigger), one hour of klines of the five symbols is appended every ``--pace`` seconds. Latency of each
  kline = the Kafka record's timestamp (producer CreateTime, i.e. its append) → the moment the decision,
  order and position rows of its hour are durable in Cassandra (the trader's flush returned,
  ``LOCAL_QUORUM``); "commit" adds the trader's checkpoint, after which Spark commits the batch;
- **max replay**: ``--replay-from`` to the end of January 2023 is appended at once, then drained
  (``availableNow``, ``maxOffsetsPerTrigger`` ``--max-offsets``): throughput in klines/s over the whole run
  (query start, first micro-batch and JVM warm-up included) and in steady state (after the first
  micro-batch), and the same latency (queueing included).

"in trader" is the part of the latency spent inside ``OnlineTrader.process_batch`` up to the durable rows
(features, decision, order, learning, Cassandra writes); the rest is Kafka → Spark micro-batch → driver.

``--metrics on`` runs the stream as ``klinestream stream`` does with its operations side on: the metrics and
monitor of every micro-batch (streaming/metrics.py, streaming/monitoring.py, with the Kafka end-offset poll)
and the ``/metrics`` endpoint, scraped every second by a thread of the bench (Prometheus scrapes every 15 s);
``--metrics both`` measures each case twice, without and with, one after the other.

One unreported replay of two weeks first warms the JVM, Spark's code generation and the clients, as in a
job that has been running. The policy is a randomly initialised Linear-DQN fitted to December 2022
(latency does not depend on the weights). Every run uses fresh topics and a fresh Cassandra keyspace,
dropped afterwards.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.credentials import CassandraRole, KafkaPrincipal  # noqa: E402
from models.kline import HOUR_MS, Kline  # noqa: E402
from models.settings import Settings, load_settings  # noqa: E402

SYMBOLS = ("BNBUSDT", "BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT")
DEC_1, DEC_30, JAN_1, FEB_1 = 1_669_852_800_000, 1_672_358_400_000, 1_672_531_200_000, 1_675_209_600_000


class TimedTrader:
    """Wraps the online trader; notes when each kline's micro-batch became durable."""

    def __init__(self, trader: Any) -> None:
        self.trader = trader
        self.done: dict[tuple[str, int], float] = {}
        self.committed: dict[tuple[str, int], float] = {}
        self.in_trader: dict[tuple[str, int], float] = {}
        self.decisions = 0
        self.batches: list[tuple[float, int]] = []
        """(end time, klines) of every micro-batch that reached the trader."""

    def process_batch(self, batch_id: int, klines: list[Kline], degraded: set[int] | None = None) -> Any:
        started = time.time()
        result = self.trader.process_batch(batch_id, klines, degraded)
        now = time.time()
        durable = result.rows_durable_at or now
        self.decisions += len(result.decisions)
        self.batches.append((now, len(klines)))
        for k in klines:
            self.done.setdefault((k.symbol, k.open_time), durable)
            self.committed.setdefault((k.symbol, k.open_time), now)
            self.in_trader.setdefault((k.symbol, k.open_time), durable - started)
        return result


def make_policy_dir(frame: Any, folder: Path) -> Path:
    import torch

    from models.config import AgentConfig
    from models.features import Normalizer, compute_feature_table, infer_spec
    from models.networks import build_network
    from models.policy import Policy

    spec = infer_spec(frame, SYMBOLS, "BTCUSDT", window=10)
    normalizer = Normalizer.fit(compute_feature_table(frame, spec), spec)
    torch.manual_seed(0)
    network = build_network("linear", spec.window, spec.n_features, spec.n_account)
    Policy(spec, normalizer, AgentConfig(variant="linear"), network, {}).save(folder / "1")
    return folder / "1"


@contextmanager
def fresh_run(settings: Settings) -> Iterator[Settings]:
    """Settings on fresh topics and a fresh keyspace; both removed afterwards."""

    from adapters.cassandra.session import connect_cluster
    from adapters.kafka import delete_topics, ensure_topics

    tag = uuid.uuid4().hex[:8]
    run = settings.model_copy(
        update={
            "kafka_topic_klines": f"bench.klines.{tag}",
            "kafka_topic_dlq": f"bench.dlq.{tag}",
            "cassandra_keyspace": f"bench_{tag}",
        }
    )
    from adapters.cassandra.provision import provision_keyspace

    ensure_topics(run)
    provision_keyspace(run)
    try:
        yield run
    finally:
        delete_topics(run, client_id="bench")
        cluster, session = connect_cluster(run, CassandraRole.ADMIN, max_outage_seconds=30)
        session.execute(f"DROP KEYSPACE IF EXISTS {run.cassandra_keyspace}", timeout=120)
        cluster.shutdown()


def append(settings: Settings, klines: list[Kline]) -> None:
    from adapters.kafka import publish_klines

    publish_klines(settings, klines, "bench", client_id="bench-producer")


def append_times(settings: Settings) -> dict[tuple[str, int], float]:
    """Kafka timestamp (s) of each kline record in ``klines.1h``."""
    from kafka import KafkaConsumer, TopicPartition

    from adapters.kafka import client_config
    from models.kline import parse_record

    consumer = KafkaConsumer(**client_config(settings, KafkaPrincipal.WRITER, enable_auto_commit=False))
    tp = TopicPartition(settings.kafka_topic_klines, 0)
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    consumer.seek_to_beginning(tp)
    out: dict[tuple[str, int], float] = {}
    seen = 0
    while seen < end:
        for message in consumer.poll(timeout_ms=5000).get(tp, []):
            seen += 1
            k = parse_record(message.value)
            out.setdefault((k.symbol, k.open_time), message.timestamp / 1000)
    consumer.close()
    return out


def latencies(settings: Settings, timed: TimedTrader, since: int) -> dict[str, np.ndarray]:
    """Per kline opened at/after ``since``: append → durable rows, append → committed batch, time in trader."""
    appended = append_times(settings)
    keys = [key for key in timed.done if key[1] >= since and key in appended]
    return {
        "latency": np.array([timed.done[k] - appended[k] for k in keys]),
        "commit": np.array([timed.committed[k] - appended[k] for k in keys]),
        "trader": np.array([timed.in_trader[k] for k in keys]),
    }


def steady_rate(batches: list[tuple[float, int]]) -> float | None:
    """Klines/s after the first micro-batch (None with fewer than two batches)."""
    if len(batches) < 2 or batches[-1][0] <= batches[0][0]:
        return None
    return sum(n for _, n in batches[1:]) / (batches[-1][0] - batches[0][0])


def build(settings: Settings, model_dir: Path, online: bool) -> TimedTrader:
    from klinestream.commands.live import build_trader

    return TimedTrader(build_trader(settings, model_dir, online))


class Operations:
    """The stream's operations side (``--metrics on``): metrics and monitor per micro-batch, the Kafka poll, the
    ``/metrics`` endpoint, and a scraper; ``on_outcome`` is None when off."""

    def __init__(self, settings: Settings, checkpoint: Path, enabled: bool) -> None:
        self.on_outcome: Any = None
        self.scrapes = 0
        if not enabled:
            return
        import threading

        import requests

        from adapters.kafka import EndOffsets
        from adapters.ops_http import OpsServer, new_registry
        from models.alerts import LoggingAlertSink
        from streaming.metrics import StreamMetrics
        from streaming.monitoring import MonitorConfig, MonitorSources, StreamMonitor
        from streaming.spark_job import committed_offsets

        registry = new_registry()
        topic = settings.kafka_topic_klines
        sources = MonitorSources(
            EndOffsets(settings, topic, KafkaPrincipal.STREAM), lambda: committed_offsets(checkpoint / "spark", topic)
        )
        self.monitor = StreamMonitor(MonitorConfig("bench", topic, live=False), StreamMetrics(registry),
                                     LoggingAlertSink(), sources).start()  # fmt: skip
        self.server = OpsServer(registry, port=0).start()
        self.on_outcome = self.monitor.on_outcome
        self._stop = threading.Event()

        def scrape() -> None:
            while not self._stop.wait(1.0):
                requests.get(f"{self.server.url}/metrics", timeout=5).raise_for_status()
                self.scrapes += 1

        self._scraper = threading.Thread(target=scrape, daemon=True)
        self._scraper.start()

    def close(self) -> None:
        if self.on_outcome is not None:
            self._stop.set()
            self._scraper.join(timeout=10)
            self.monitor.stop()
            self.server.close()


def run_replay(
    spark: Any,
    settings: Settings,
    klines: list[Kline],
    model_dir: Path,
    online: bool,
    max_offsets: int = 20_000,
    metrics: bool = False,
) -> dict[str, Any]:
    from streaming.spark_job import StreamOptions, run_stream

    with fresh_run(settings) as run, tempfile.TemporaryDirectory() as checkpoint:
        timed = build(run, model_dir, online)
        append(run, klines)
        options = StreamOptions(
            name="bench", available_now=True, max_offsets_per_trigger=max_offsets, checkpoint_dir=Path(checkpoint)
        )
        ops = Operations(run, Path(checkpoint), metrics)
        started = time.perf_counter()
        try:
            run_stream(spark, run, timed, options, ops.on_outcome)
        finally:
            ops.close()
        seconds = time.perf_counter() - started
        measured = latencies(run, timed, klines[0].open_time + 48 * HOUR_MS)
        timed.trader.sink.db.close()
    steady = steady_rate(timed.batches)
    return {"klines": len(klines), "seconds": seconds, "decisions": timed.decisions, "steady": steady,
            "batches": len(timed.batches), **measured}  # fmt: skip


def run_live(
    spark: Any,
    settings: Settings,
    warmup: list[Kline],
    live: list[list[Kline]],
    model_dir: Path,
    online: bool,
    pace: float,
    trigger: float,
    metrics: bool = False,
) -> dict[str, Any]:
    from adapters.kafka import build_producer
    from streaming.spark_job import StreamOptions, start_stream

    with fresh_run(settings) as run, tempfile.TemporaryDirectory() as checkpoint:
        timed = build(run, model_dir, online)
        append(run, warmup)
        options = StreamOptions(name="bench-live", trigger_seconds=trigger, checkpoint_dir=Path(checkpoint))
        producer = build_producer(run, client_id="bench-dlq", principal=KafkaPrincipal.STREAM)
        ops = Operations(run, Path(checkpoint), metrics)
        query = start_stream(spark, run, timed, options, producer, ops.on_outcome)
        try:
            _wait(lambda: len(timed.done) >= len(warmup) - len(SYMBOLS), 120)
            for hour in live:
                started = time.perf_counter()
                append(run, hour)
                time.sleep(max(0.0, pace - (time.perf_counter() - started)))
            _wait(lambda: all((k.symbol, k.open_time) in timed.done for k in live[-1]), 60)
        finally:
            query.stop()
            producer.close()
            ops.close()
        measured = latencies(run, timed, live[0][0].open_time)
        timed.trader.sink.db.close()
    return {"klines": sum(len(h) for h in live), "decisions": timed.decisions, **measured}


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout} s")
        time.sleep(0.05)


def report(label: str, result: dict[str, Any]) -> None:
    def ms(name: str, q: float) -> float:
        return float(np.percentile(result[name] * 1000, q))

    line = f"{label:<50} klines {result['klines']:>6}  decisions {result['decisions']:>5}  "
    line += f"durable p50 {ms('latency', 50):6.0f} ms  p99 {ms('latency', 99):6.0f} ms  "
    line += f"commit p99 {ms('commit', 99):6.0f} ms  (in trader p50 {ms('trader', 50):4.0f} ms)"
    if "seconds" in result:
        steady = f"{result['steady']:7.0f}" if result["steady"] else "      -"
        line += f"  wall {result['seconds']:5.1f} s  {result['klines'] / result['seconds']:6.0f} klines/s"
        line += f"  steady {steady} klines/s ({result['batches']} batches)"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "binance_spot_1h")
    parser.add_argument("--live-hours", type=int, default=30)
    parser.add_argument("--pace", type=float, default=1.0, help="Real seconds between two live hours.")
    parser.add_argument("--replay-from", default="2022-01-01", help="First UTC day of the replay (to 2023-02-01).")
    parser.add_argument("--max-offsets", type=int, default=10_000, help="maxOffsetsPerTrigger of the replay.")
    parser.add_argument("--trigger-seconds", type=float, default=None, help="Live trigger (default: the job's).")
    parser.add_argument("--only", choices=("live", "replay"), default=None, help="Run one of the two measurements.")
    parser.add_argument("--metrics", choices=("off", "on", "both"), default="off",
                        help="The operations side (metrics, monitor, /metrics scraped every second): off, on, or "
                        "each case both without and with it.")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    from adapters.kline_files import read_kline_dirs
    from streaming.spark_job import StreamOptions
    from streaming.spark_session import build_spark_session

    torch.set_num_threads(1)
    settings = load_settings()
    trigger = StreamOptions().trigger_seconds if args.trigger_seconds is None else args.trigger_seconds
    replay_from = int(pd.Timestamp(args.replay_from, tz="UTC").timestamp() * 1000)
    frame = read_kline_dirs(args.data_dir, SYMBOLS, min(replay_from, DEC_1), FEB_1)
    klines = _to_klines(frame[frame.open_time >= DEC_30])
    replay = _to_klines(frame[frame.open_time >= replay_from])
    print(f"streaming bench: {len(SYMBOLS)} symbols, load average {os.getloadavg()}, {os.cpu_count()} CPUs, "
          f"live trigger {trigger:g} s")  # fmt: skip
    spark = build_spark_session(settings, "klinestream-bench-streaming")
    try:
        with tempfile.TemporaryDirectory() as models:
            model_dir = make_policy_dir(frame[(frame.open_time >= DEC_1) & (frame.open_time < JAN_1)], Path(models))
            by_hour: dict[int, list[Kline]] = {}
            for k in klines:
                by_hour.setdefault(k.open_time, []).append(k)
            hours = sorted(by_hour)
            warm = [k for h in hours[:48] for k in by_hour[h]]
            live = [by_hour[h] for h in hours[48 : 48 + args.live_hours]]
            # warm the JVM, Spark's code generation and the Kafka/Cassandra clients once, as a running job is
            run_replay(spark, settings, replay[: 24 * 14 * len(SYMBOLS)], model_dir, False, args.max_offsets)
            cases = {"off": (False,), "on": (True,), "both": (False, True)}[args.metrics]
            for online in (True, False):
                tag = "online learning on " if online else "online learning off"
                for metrics in cases:
                    mark = ", metrics on " if metrics else (", metrics off" if args.metrics == "both" else "")
                    if args.only != "replay":
                        result = run_live(spark, settings, warm, live, model_dir, online, args.pace, trigger, metrics)
                        report(f"live pace ({args.pace:g} s/hour), {tag}{mark}", result)
                    if args.only != "live":
                        label = f"max replay ({args.replay_from}→2023-02), {tag}{mark}"
                        result = run_replay(spark, settings, replay, model_dir, online, args.max_offsets, metrics)
                        report(label, result)
    finally:
        spark.stop()


def _to_klines(frame: Any) -> list[Kline]:
    """Rows of a kline frame → klines (through the Kafka encoding's parser, so empty optionals stay None)."""
    from models.kline import parse_record

    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    klines = [parse_record({**row, "schema_version": 1}) for row in records]
    return sorted(klines, key=lambda k: (k.open_time, k.symbol))


if __name__ == "__main__":
    main()
