"""End to end on real services: the simulator replays January 2023 (real Binance klines from ../shared) →
ingestor → Kafka → Spark job → online trader → Cassandra, with a restart of the stream job half way.
Every hour of January gets exactly one decision of the model version."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from adapters.cassandra.provision import provision_keyspace
from models.credentials import CassandraRole
from models.kline import HOUR_MS, Kline
from models.settings import Settings
from tests.integration.live_helpers import IngestorThread, live_topics, read_topic, seed
from tests.integration.live_stream_helpers import close_trader, trader_rows
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMBOLS = ("BNBUSDT", "BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT")
DEC_1, DEC_30, JAN_1, FEB_1 = 1_669_852_800_000, 1_672_358_400_000, 1_672_531_200_000, 1_675_209_600_000
SPEED = 60.0  # simulated hours per real second


def drain(spark: Any, settings: Settings, trader: Any, checkpoint: Path) -> None:
    from streaming.spark_job import StreamOptions, run_stream

    options = StreamOptions(name="e2e", available_now=True, max_offsets_per_trigger=1000, checkpoint_dir=checkpoint)
    run_stream(spark, settings, trader, options)


def test_january_2023_flows_to_one_decision_per_hour_in_cassandra_across_a_restart(
    settings: Settings, stack: Any, spark: Any, shared_klines_dir: Path, tmp_path: Path
) -> None:
    from adapters.cassandra.session import connect_cluster
    from adapters.kline_files import read_kline_dirs
    from klinestream.commands.live import build_trader
    from simulator.server import SimulatorServer
    from simulator.store import KlineStore, ReplayClock
    from tests.trader_fakes import make_policy

    stack.require("kafka", "cassandra", "spark")
    torch.set_num_threads(1)
    frame = read_kline_dirs(shared_klines_dir, SYMBOLS, DEC_1, FEB_1)
    make_policy(frame[frame.open_time < JAN_1], seed=1).save(tmp_path / "models" / "1")
    store = KlineStore(frame)
    before = [k for k in _klines_at(store, DEC_30 - HOUR_MS)]
    expected_records = len(before) + len(SYMBOLS) * (FEB_1 - DEC_30) // HOUR_MS
    checkpoint = tmp_path / "checkpoint"
    server = SimulatorServer(store, port=0, clock=ReplayClock(start_ms=JAN_1, speed=SPEED))
    keyspace = f"test_e2e_{uuid.uuid4().hex[:10]}"
    with server:
        urls = {"binance_base_url": server.base_url, "binance_ws_url": server.ws_url}
        with live_topics(settings, cassandra_keyspace=keyspace, **urls) as live:
            provision_keyspace(live)  # the admin path: the stream's role may not create a keyspace
            seed(live, before)  # the ingestor resumes after the last hour in Kafka: fills Dec 30-31 from REST
            model_dir = tmp_path / "models" / "1"
            with IngestorThread(live) as ingestor:

                def published() -> int:
                    return len(read_topic(live, live.kafka_topic_klines))

                wait_for(lambda: ingestor.error or published() > 2000, 120)
                first = build_trader(live, model_dir)
                drain(spark, live, first, checkpoint)  # the stream job stops half way ...
                close_trader(first)
                wait_for(
                    lambda: ingestor.error or len(read_topic(live, live.kafka_topic_klines)) >= expected_records, 120
                )
            assert ingestor.error is None, ingestor.error
            second = build_trader(live, model_dir)  # ... and restarts from its checkpoints
            try:
                drain(spark, live, second, checkpoint)
                decisions = trader_rows(second, "decisions", "BTCUSDT")
                orders = trader_rows(second, "orders", "BTCUSDT")
            finally:
                close_trader(second)
                cluster, session = connect_cluster(live, CassandraRole.ADMIN, max_outage_seconds=30)
                session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
                cluster.shutdown()
            dlq = read_topic(live, live.kafka_topic_dlq)
            klines = read_topic(live, live.kafka_topic_klines)

    assert len(klines) == expected_records and dlq == []
    january = [d for d in decisions if JAN_1 <= d["open_time"] < FEB_1]
    hours = [d["open_time"] for d in january]
    assert hours == list(range(JAN_1, FEB_1, HOUR_MS)), "every January hour needs exactly one decision"
    assert {d["model_version"] for d in january} == {"1"}
    assert not any(d["degraded"] for d in january), "January 2023 has no missing hour"
    ordered = {d["client_order_id"] for d in january if d["client_order_id"] is not None}
    assert ordered <= {o["client_order_id"] for o in orders}
    assert {d["batch_id"] for d in january} != {january[0]["batch_id"]}, "expected several micro-batches"


def _klines_at(store: Any, open_time: int) -> list[Kline]:
    from models.kline import parse_rest_kline
    from simulator.store import rest_array

    out = []
    for symbol in SYMBOLS:
        index = store.index_of(symbol, open_time)
        assert index is not None, f"{symbol} lacks {open_time} in the shared data"
        out.append(parse_rest_kline(rest_array(store.row(symbol, index)), symbol))
    return out
