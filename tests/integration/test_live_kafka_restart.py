"""The running stream survives a Kafka broker restart: the real broker of the stack is stopped and started
again while the Spark job (online trader, Cassandra sink) is part way through a replay, and once Kafka is
back every hour still gets exactly one decision, in the same query.

Design: the replay is in ``klines.1h`` before the query starts (as an ingestor would have left it) and the
query drains it in many small micro-batches (processing-time trigger, small ``maxOffsetsPerTrigger``), so
the broker goes away between and during micro-batches of a live query — the Kafka source's offset
fetches, the executors' reads and the driver's DLQ producer all see the outage. The producer side is kept
out of the loop on purpose: the ingestor's own reconnection is tested in test_live_ingestor.py, and here
a hole could only come from the stream (Kafka's log is persisted, so a lost hour is the stream's fault)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from models.credentials import KafkaPrincipal
from models.kline import HOUR_MS
from models.settings import Settings
from tests.integration.live_helpers import live_topics, read_topic, seed
from tests.integration.live_stream_helpers import (
    close_trader,
    keyspace_dropped_after,
    new_keyspace,
    trader_rows,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

log = logging.getLogger(__name__)

WARMUP = 33  # hours before the first state (24 h of rolling features + a 10 h window - 1)
HOURS = 120  # decided hours
MAX_OFFSETS = 25  # 5 hours of 5 symbols per micro-batch: about 30 micro-batches
RESTART_AFTER = 20  # decisions written before the broker is stopped


def restart_kafka(settings: Settings, downtime_s: float) -> None:
    """Stop the stack's broker (its process tree), leave it down ``downtime_s``, start it and wait healthy."""
    from klinestream.stack import control
    from klinestream.stack.services import build_services

    services = build_services(settings, ["kafka"])
    try:
        [stopped] = control.down(services)
        assert stopped.stopped_pid is not None, "the stack's Kafka was not running"
        time.sleep(downtime_s)
    finally:
        [started] = control.up(services, report=log.info)  # always leave the stack's broker running
    assert started.action is control.Action.START


def test_every_hour_gets_exactly_one_decision_across_a_kafka_broker_restart(
    settings: Settings, stack: Any, spark: Any, tmp_path: Path
) -> None:
    from adapters.kafka import build_producer
    from klinestream.commands.live import build_trader
    from streaming.spark_job import StreamOptions, start_stream
    from tests.trader_fakes import make_policy, market, to_klines

    stack.require("kafka", "cassandra", "spark")
    torch.set_num_threads(1)
    frame = market(WARMUP + HOURS, seed=4)
    model_dir = make_policy(frame, seed=8).save(tmp_path / "models" / "1")
    klines = sorted(to_klines(frame), key=lambda k: (k.open_time, k.symbol))  # as the ingestor publishes them
    first = int(frame["open_time"].min()) + WARMUP * HOUR_MS

    with live_topics(settings, cassandra_keyspace=new_keyspace("test_kafka_restart")) as live:
        with keyspace_dropped_after(live):
            seed(live, klines)
            trader = build_trader(live, model_dir)
            producer = build_producer(live, client_id="test-restart-dlq", principal=KafkaPrincipal.STREAM)
            options = StreamOptions(name="kafka-restart", trigger_seconds=1.0, max_offsets_per_trigger=MAX_OFFSETS,
                                    checkpoint_dir=tmp_path / "checkpoint")  # fmt: skip
            outcomes: list[Any] = []
            query = start_stream(spark, live, trader, options, producer, on_outcome=outcomes.append)
            try:

                def decisions() -> list[dict[str, Any]]:
                    assert query.exception() is None, query.exception()
                    return trader_rows(trader, "decisions")

                wait_for(lambda: len(decisions()) >= RESTART_AFTER, 180)
                restart_kafka(live, downtime_s=5.0)
                back = len(decisions())
                log.warning("kafka restarted with %d of %d decisions written", back, HOURS)
                wait_for(lambda: len(decisions()) >= HOURS, 240)
                time.sleep(3)  # a duplicate or stray decision would show up in the micro-batches that follow
                assert query.isActive, "the query must outlive the broker restart"
                decided = decisions()
            finally:
                query.stop()
                producer.close()
                close_trader(trader)
        kept = read_topic(live, live.kafka_topic_klines)
        dlq = read_topic(live, live.kafka_topic_dlq)

    assert len(kept) == len(klines), "the broker lost records of the topic"
    assert back < HOURS, "the broker came back after the stream had finished: nothing was tested"
    hours = [d["open_time"] for d in decided]
    assert hours == list(range(first, first + HOURS * HOUR_MS, HOUR_MS)), "every hour needs exactly one decision"
    assert not any(d["degraded"] for d in decided), "no kline of the replay is missing"
    assert dlq == [], "no record of the replay is late, duplicate or bad"
    assert decided[-1]["online_updates"] > 0
