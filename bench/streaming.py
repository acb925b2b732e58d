"""Streaming latency and replay throughput: Kafka append → decision and order durable in Cassandra.

    .venv/bin/python bench/streaming.py [--live-hours 30] [--pace 1.0] [--data-dir ../shared/data/binance_spot_1h]

Needs Kafka and Cassandra running (``klinestream stack up kafka cassandra``) and the Spark connector jars
(``klinestream stack install``). For each of online learning on and off:

- **live pace**: the streaming query runs (processing-time trigger), one hour of klines of the five symbols
  is appended every ``--pace`` seconds; latency of each kline = the Kafka record's timestamp (producer
  CreateTime, i.e. its append) → the return of the trader's micro-batch that decided its hour (decision,
  order and position rows are written synchronously to Cassandra before it returns);
- **max replay**: January 2023 (plus warm-up) is appended at once, then drained (``availableNow``,
  ``maxOffsetsPerTrigger`` 5000): replay throughput in klines/s and the same latency (queueing included).

"in trader" is the part of the latency spent inside ``OnlineTrader.process_batch`` (features, decision,
order, learning, Cassandra writes and checkpoint); the rest is Kafka → Spark micro-batch → driver.

The policy is a randomly initialised Linear-DQN fitted to December 2022 (latency does not depend on the
weights). Every run uses fresh topics and a fresh Cassandra keyspace, dropped afterwards.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.kline import Kline  # noqa: E402
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

    def process_batch(self, batch_id: int, klines: list[Kline], degraded: set[int] | None = None) -> Any:
        started = time.time()
        result = self.trader.process_batch(batch_id, klines, degraded)
        now = time.time()
        durable = result.rows_durable_at or now
        self.decisions += len(result.decisions)
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

    from streaming.cassandra_sink import connect_cluster
    from streaming.kafka_io import delete_topics, ensure_topics

    tag = uuid.uuid4().hex[:8]
    run = settings.model_copy(
        update={
            "kafka_topic_klines": f"bench.klines.{tag}",
            "kafka_topic_dlq": f"bench.dlq.{tag}",
            "cassandra_keyspace": f"bench_{tag}",
        }
    )
    ensure_topics(run)
    try:
        yield run
    finally:
        delete_topics(run, client_id="bench")
        cluster, session = connect_cluster(run, max_outage_seconds=30)
        session.execute(f"DROP KEYSPACE IF EXISTS {run.cassandra_keyspace}", timeout=120)
        cluster.shutdown()


def append(settings: Settings, klines: list[Kline]) -> None:
    from streaming.ingestor import publish_klines

    publish_klines(settings, klines, "bench", client_id="bench-producer")


def append_times(settings: Settings) -> dict[tuple[str, int], float]:
    """Kafka timestamp (s) of each kline record in ``klines.1h``."""
    from kafka import KafkaConsumer, TopicPartition

    from models.kline import parse_record

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
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


def latencies(settings: Settings, timed: TimedTrader, since: int) -> tuple[np.ndarray, np.ndarray]:
    """(append → durable decision, time inside the trader's micro-batch) per kline opened at/after ``since``."""
    appended = append_times(settings)
    keys = [key for key in timed.done if key[1] >= since and key in appended]
    return np.array([timed.done[k] - appended[k] for k in keys]), np.array([timed.in_trader[k] for k in keys])


def build(settings: Settings, model_dir: Path, online: bool) -> TimedTrader:
    from klinestream.commands.live import build_trader

    return TimedTrader(build_trader(settings, model_dir, online))


def run_replay(spark: Any, settings: Settings, klines: list[Kline], model_dir: Path, online: bool) -> dict[str, Any]:
    from streaming.spark_job import StreamOptions, run_stream

    with fresh_run(settings) as run, tempfile.TemporaryDirectory() as checkpoint:
        timed = build(run, model_dir, online)
        append(run, klines)
        options = StreamOptions(
            name="bench", available_now=True, max_offsets_per_trigger=5000, checkpoint_dir=Path(checkpoint)
        )
        started = time.perf_counter()
        run_stream(spark, run, timed, options)
        seconds = time.perf_counter() - started
        lat, trader = latencies(run, timed, JAN_1)
        timed.trader.sink.close()
    return {"klines": len(klines), "seconds": seconds, "latency": lat, "trader": trader, "decisions": timed.decisions}


def run_live(
    spark: Any,
    settings: Settings,
    warmup: list[Kline],
    live: list[list[Kline]],
    model_dir: Path,
    online: bool,
    pace: float,
) -> dict[str, Any]:
    from streaming.kafka_io import build_producer
    from streaming.spark_job import StreamOptions, start_stream

    with fresh_run(settings) as run, tempfile.TemporaryDirectory() as checkpoint:
        timed = build(run, model_dir, online)
        append(run, warmup)
        options = StreamOptions(name="bench-live", trigger_seconds=0.1, checkpoint_dir=Path(checkpoint))
        producer = build_producer(run, client_id="bench-dlq")
        query = start_stream(spark, run, timed, options, producer)
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
        lat, trader = latencies(run, timed, live[0][0].open_time)
        timed.trader.sink.close()
    return {"klines": sum(len(h) for h in live), "latency": lat, "trader": trader, "decisions": timed.decisions}


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout} s")
        time.sleep(0.05)


def report(label: str, result: dict[str, Any]) -> None:
    lat = result["latency"] * 1000
    line = f"{label:<34} klines {result['klines']:>5}  decisions {result['decisions']:>4}  "
    line += f"latency p50 {np.percentile(lat, 50):6.0f} ms  p99 {np.percentile(lat, 99):6.0f} ms"
    line += f" (in trader p50 {np.percentile(result['trader'] * 1000, 50):5.0f} ms)"
    if "seconds" in result:
        line += f"  wall {result['seconds']:6.1f} s  {result['klines'] / result['seconds']:7.0f} klines/s"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "binance_spot_1h")
    parser.add_argument("--live-hours", type=int, default=30)
    parser.add_argument("--pace", type=float, default=1.0, help="Real seconds between two live hours.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    from pipelines.kline_files import read_kline_dirs
    from streaming.spark_session import build_spark_session

    torch.set_num_threads(1)
    settings = load_settings()
    frame = read_kline_dirs(args.data_dir, SYMBOLS, DEC_1, FEB_1)
    klines = _to_klines(frame[frame.open_time >= DEC_30])
    print(f"streaming bench: {len(SYMBOLS)} symbols, load average {os.getloadavg()}, {os.cpu_count()} CPUs")
    spark = build_spark_session(settings, "klinestream-bench-streaming")
    try:
        with tempfile.TemporaryDirectory() as models:
            model_dir = make_policy_dir(frame[frame.open_time < JAN_1], Path(models))
            by_hour: dict[int, list[Kline]] = {}
            for k in klines:
                by_hour.setdefault(k.open_time, []).append(k)
            hours = sorted(by_hour)
            warm = [k for h in hours[:48] for k in by_hour[h]]
            live = [by_hour[h] for h in hours[48 : 48 + args.live_hours]]
            for online in (True, False):
                tag = "online learning on " if online else "online learning off"
                result = run_live(spark, settings, warm, live, model_dir, online, args.pace)
                report(f"live pace ({args.pace:g} s/hour), {tag}", result)
                report(f"max replay (Jan 2023), {tag}", run_replay(spark, settings, klines, model_dir, online))
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
