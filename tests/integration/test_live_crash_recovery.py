"""Crash recovery on real services: ``klinestream stream`` (Spark job + online trader learning online + paper
broker + Cassandra), draining a replay from Kafka, is killed with SIGKILL at seeded random points three times
and restarted each time on the same checkpoint and trader id. Its decisions, orders and positions in
Cassandra then equal, column for column, those of an uninterrupted run of the same input (another keyspace
and checkpoint): no hour missing, none twice, and the online update counter carried on across the kills.

The kill points are drawn from a generator seeded by ``KLINESTREAM_CRASH_SEED`` (default: a fresh seed,
logged and named in every assertion message, so a failure can be replayed)."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from models.credentials import CassandraRole
from models.kline import HOUR_MS
from models.settings import Settings
from tests.integration.live_helpers import live_topics, seed
from tests.integration.live_stream_helpers import TRADED, keyspace_dropped_after, new_keyspace, read_rows
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

log = logging.getLogger(__name__)

WARMUP = 33  # hours before the first state (24 h of rolling features + a 10 h window - 1)
HOURS = 120  # decided hours: online updates start after 32 transitions, so about 88 updates
MAX_OFFSETS = 50  # klines per micro-batch: 10 hours of 5 symbols, 16 micro-batches in all
KILLS = 3
TRADER = "paper-BTCUSDT"  # the stream's default trader id (same in both runs: client order ids hash it)
TABLES = ("decisions", "orders", "positions")


class StreamProcess:
    """``klinestream stream --available-now`` in its own process group (the Python driver and Spark's JVM)."""

    def __init__(self, settings: Settings, name: str, model_dir: Path, log_file: Path) -> None:
        env = {**os.environ, "KLINESTREAM_CASSANDRA_KEYSPACE": settings.cassandra_keyspace,
               "KLINESTREAM_KAFKA_TOPIC_KLINES": settings.kafka_topic_klines,
               "KLINESTREAM_KAFKA_TOPIC_DLQ": settings.kafka_topic_dlq}  # fmt: skip
        command = [str(Path(sys.executable).with_name("klinestream")), "stream", "--name", name, "--model",
                   str(model_dir), "--available-now", "--max-offsets", str(MAX_OFFSETS)]  # fmt: skip
        self.log_file = log_file
        with log_file.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip

    def tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """SIGKILL the whole process group (no shutdown hook, no flush) and check nothing of it survives."""
        if self.process.poll() is not None:
            return
        children = psutil.Process(self.process.pid).children(recursive=True)  # Spark's JVM among them
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"processes of the killed stream survived: {alive}"

    def finish(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the stream did not drain the topic within {timeout} s:\n{self.tail()}") from None


class DecisionCounter:
    """Counts the trader's decisions in Cassandra over one connection (0 until the stream made the schema)."""

    def __init__(self, settings: Settings) -> None:
        from adapters.cassandra.session import connect_cluster

        self.cluster, self.session = connect_cluster(settings, CassandraRole.OPERATOR, max_outage_seconds=30)
        self.query = (
            f"SELECT count(*) FROM {settings.cassandra_keyspace}.decisions WHERE trader_id = %s AND symbol = %s"
        )

    def __call__(self) -> int:
        from cassandra import DriverException
        from cassandra.cluster import NoHostAvailable

        try:
            return int(self.session.execute(self.query, (TRADER, TRADED), timeout=30).one()[0])
        except DriverException:  # the keyspace does not exist yet: the stream creates it at start-up
            return 0
        except NoHostAvailable as exc:  # the table is being created ("Unknown CF"): its schema is not settled yet
            if "Unknown CF" not in str(exc):
                raise
            return 0

    def close(self) -> None:
        self.cluster.shutdown()


def run_to_end(settings: Settings, name: str, model_dir: Path, log_file: Path) -> None:
    stream = StreamProcess(settings, name, model_dir, log_file)
    assert stream.finish(timeout=300) == 0, f"stream {name} failed:\n{stream.tail()}"


def run_with_kills(settings: Settings, name: str, model_dir: Path, log_file: Path, rng: random.Random,
                   seed_value: int) -> list[int]:  # fmt: skip
    """Start, kill at ``KILLS`` seeded random points (a number of decisions reached, then a random delay
    of up to 0.3 s), restart on the same checkpoint; finally run to the end.
    Each kill waits for at least one new decision after the restart. Returns the decision counts at the kills."""
    # one kill point in each third of the first HOURS - 50 decisions (at least 5 micro-batches left after it:
    # a warm stream runs a micro-batch in a fraction of a second, so the kill must come soon after the point)
    bounds = [2 + i * (HOURS - 50 - 2) // KILLS for i in range(KILLS + 1)]
    thresholds = [rng.randrange(bounds[i], bounds[i + 1]) for i in range(KILLS)]
    killed_at: list[int] = []
    count = DecisionCounter(settings)
    try:
        for threshold in thresholds:
            stream = StreamProcess(settings, name, model_dir, log_file)
            # the restarted stream must have written decisions of its own before it is killed again
            threshold = max(threshold, (killed_at[-1] + 1) if killed_at else 0)

            def reached(stream: StreamProcess = stream, threshold: int = threshold) -> bool:
                assert stream.process.poll() is None, f"seed={seed_value}: stream ended early:\n{stream.tail()}"
                return count() >= threshold

            try:
                why = f"seed={seed_value}: no {threshold} decisions"
                wait_for(reached, 240, message=lambda stream=stream, why=why: f"{why}:\n{stream.tail()}")  # type: ignore[misc]
                time.sleep(rng.uniform(0.0, 0.3))
                assert stream.process.poll() is None, f"seed={seed_value}: the stream ended before the kill"
            finally:
                stream.kill()
            killed_at.append(count())
            log.warning("seed=%d killed the stream at %d decisions (threshold %d)", seed_value, killed_at[-1],
                        threshold)  # fmt: skip
    finally:
        count.close()
    run_to_end(settings, name, model_dir, log_file)
    return killed_at


def test_a_stream_killed_three_times_writes_what_an_uninterrupted_run_writes(
    settings: Settings, stack: Any, tmp_path: Path
) -> None:
    from tests.trader_fakes import make_policy, market, to_klines

    stack.require("kafka", "cassandra", "spark")
    seed_value = int(os.environ.get("KLINESTREAM_CRASH_SEED", random.SystemRandom().randrange(2**31)))
    log.warning("crash recovery kill points: KLINESTREAM_CRASH_SEED=%d", seed_value)
    rng = random.Random(seed_value)
    frame = market(WARMUP + HOURS, seed=3)
    model_dir = make_policy(frame, seed=8).save(tmp_path / "models" / "1")
    klines = sorted(to_klines(frame), key=lambda k: (k.open_time, k.symbol))  # as the ingestor publishes them
    names = {run: f"test-crash-{run}-{uuid.uuid4().hex[:8]}" for run in ("calm", "killed")}
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    killed_at: list[int] = []
    with live_topics(settings) as topics:
        seed(topics, klines)
        try:
            for run in ("calm", "killed"):
                live = topics.model_copy(update={"cassandra_keyspace": new_keyspace(f"test_crash_{run}")})
                with keyspace_dropped_after(live):
                    log_file = tmp_path / f"{run}.log"
                    if run == "calm":
                        run_to_end(live, names[run], model_dir, log_file)
                    else:
                        killed_at = run_with_kills(live, names[run], model_dir, log_file, rng, seed_value)
                    rows[run] = {table: read_rows(live, table, TRADER) for table in TABLES}
        finally:
            for name in names.values():
                shutil.rmtree(settings.home / "checkpoints" / name, ignore_errors=True)

    why = f"seed={seed_value} kills at {killed_at} decisions"
    calm, killed = rows["calm"], rows["killed"]
    first = int(frame["open_time"].min()) + WARMUP * HOUR_MS
    hours = [d["open_time"] for d in killed["decisions"]]
    assert hours == list(range(first, first + HOURS * HOUR_MS, HOUR_MS)), f"{why}: an hour missing or twice"
    assert len(killed_at) == KILLS and killed_at == sorted(set(killed_at)) and killed_at[-1] < HOURS, why
    assert killed["decisions"][-1]["online_updates"] == calm["decisions"][-1]["online_updates"] > 0, why
    assert len(calm["orders"]) > 5 and {o["side"] for o in calm["orders"]} == {"BUY", "SELL"}
    for table in TABLES:
        assert len(killed[table]) == len(calm[table]), f"{why}: {table} row counts differ"
        for crashed_row, calm_row in zip(killed[table], calm[table], strict=True):
            differing = {k: (crashed_row[k], calm_row[k]) for k in calm_row if crashed_row[k] != calm_row[k]}
            assert not differing, f"{why}: {table} at open_time={calm_row['open_time']} differs: {differing}"
