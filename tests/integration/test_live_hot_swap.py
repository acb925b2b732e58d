"""Hot swap on real services: the running Spark job trades the MLflow champion (v1); promoting v2 (moving the
alias) while the query runs makes the following micro-batches decide with v2 — recorded on the decisions in
Cassandra, the first one with ``swapped_from`` = v1 — without restarting the job."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from models.credentials import KafkaPrincipal
from models.kline import HOUR_MS
from models.settings import Settings
from tests.integration.live_helpers import live_topics, seed
from tests.integration.live_stream_helpers import (
    by_hour,
    close_trader,
    keyspace_dropped_after,
    new_keyspace,
    register,
    trader_rows,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WARMUP = 33  # hours before the first state (24 h of rolling features + a 10 h window - 1)
BEFORE, AFTER = 24, 24  # decided hours published before and after the promotion


def test_promoting_v2_while_the_stream_runs_swaps_later_micro_batches_to_v2_without_a_restart(
    settings: Settings, stack: Any, spark: Any, tmp_path: Path
) -> None:
    from adapters.kafka import build_producer
    from adapters.mlflow import aliases
    from adapters.mlflow.registry import MlflowModelSource, registry_client
    from streaming.live_trader import start_live_trader
    from streaming.model_source import PollingModelSource
    from streaming.spark_job import StreamOptions, start_stream
    from tests.trader_fakes import make_policy, market, to_klines

    stack.require("kafka", "cassandra", "mlflow", "spark")
    torch.set_num_threads(1)
    uri, name = settings.mlflow_tracking_uri, f"klinestream-test-swap-{uuid.uuid4().hex[:8]}"
    frame = market(WARMUP + BEFORE + AFTER, seed=5)
    v1 = register(uri, name, make_policy(frame, seed=1), frame, tmp_path)
    v2 = register(uri, name, make_policy(frame, seed=2), frame, tmp_path)
    client = registry_client(uri)
    aliases.promote(client, name, v1, "test", uri)
    klines = to_klines(frame)
    cut = int(frame["open_time"].min()) + (WARMUP + BEFORE) * HOUR_MS  # first hour published after promotion
    trader_id = f"swap-{uuid.uuid4().hex[:6]}"

    with live_topics(settings, cassandra_keyspace=new_keyspace("test_swap")) as live, keyspace_dropped_after(live):
        source = PollingModelSource(MlflowModelSource(uri, name), interval=0.5)  # as `klinestream stream` has it
        trader = start_live_trader(live, source, trader_id=trader_id)
        producer = build_producer(live, client_id="test-swap-dlq", principal=KafkaPrincipal.STREAM)
        options = StreamOptions(name="hot-swap", trigger_seconds=1.0, max_offsets_per_trigger=40,
                                checkpoint_dir=tmp_path / "checkpoint")  # fmt: skip
        outcomes: list[Any] = []
        query = start_stream(spark, live, trader, options, producer, on_outcome=outcomes.append)
        try:

            def decided() -> list[dict[str, Any]]:
                assert query.exception() is None, query.exception()
                return trader_rows(trader, "decisions")

            seed(live, by_hour([k for k in klines if k.open_time < cut]))
            wait_for(lambda: len(decided()) >= BEFORE, 180)
            batches_before = len(outcomes)
            aliases.promote(client, name, v2, "test", uri)  # the query keeps running
            wait_for(lambda: source.current_version() == str(v2), 10)  # seen by the background poll
            seed(live, by_hour([k for k in klines if k.open_time >= cut]))
            wait_for(lambda: len(decided()) >= BEFORE + AFTER, 180)
            assert query.isActive, "the query must not have stopped or restarted"
            decisions = decided()
            query_id = query.id
        finally:
            query.stop()
            producer.close()
            close_trader(trader)
            source.close()

    assert query_id == query.id
    assert len(outcomes) > batches_before + 1, "expected several micro-batches after the promotion"
    hours = [d["open_time"] for d in decisions]
    assert hours == sorted(set(hours)) and len(hours) == BEFORE + AFTER, "one decision per hour"
    before = [d for d in decisions if d["open_time"] < cut]
    after = [d for d in decisions if d["open_time"] >= cut]
    assert len(before) == BEFORE and {d["model_version"] for d in before} == {str(v1)}
    assert len(after) == AFTER and {d["model_version"] for d in after} == {str(v2)}
    assert after[0]["swapped_from"] == str(v1), "the first decision after the swap names the version it replaced"
    assert all(d["swapped_from"] is None for d in before + after[1:])
