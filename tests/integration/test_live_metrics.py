"""``/metrics`` of a running ``klinestream stream`` during a replay, parsed with prometheus_client's parser, holds
what Cassandra holds; ``/ready`` turns false while Cassandra is unreachable and true again after (issue 15,
must-show 1).

The stream is a real process (Spark local mode with the Kafka connector, the online trader, the paper broker)
on a fresh topic seeded with a replay and a fresh keyspace, reaching Cassandra through a TCP proxy that the
test stops and restarts (tests/integration/tcp_proxy.py) without touching the shared Cassandra."""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from models.settings import Settings
from tests.integration.live_helpers import live_topics, seed
from tests.integration.live_process_helpers import (
    KLINESTREAM,
    free_port,
    process_env,
    ready,
    scrape,
    total,
    wait_until,
)
from tests.integration.live_stream_helpers import TRADED, fresh_keyspace, read_rows
from tests.integration.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WARMUP, HOURS = 33, 60
TRADER = "paper-BTCUSDT"


def wait(predicate: Any, timeout: float, what: str, log_file: Path) -> None:
    wait_until(predicate, timeout, what, lambda: log_file.read_text(errors="replace"))


def test_metrics_of_a_running_stream_hold_what_cassandra_holds_and_ready_follows_cassandra(
    settings: Settings, stack: Any, tmp_path: Path
) -> None:
    from tests.trader_fakes import make_policy, market, to_klines

    stack.require("kafka", "cassandra", "spark")
    frame = market(WARMUP + HOURS, seed=3)
    model_dir = make_policy(frame, seed=8).save(tmp_path / "models" / "1")
    klines = sorted(to_klines(frame), key=lambda k: (k.open_time, k.symbol))
    name, port = f"test-metrics-{uuid.uuid4().hex[:8]}", free_port()
    base, log_file = f"http://127.0.0.1:{port}", tmp_path / "stream.log"
    proxy = TcpProxy((settings.cassandra_hosts[0], settings.cassandra_port)).start()
    lags: list[float] = []
    with live_topics(settings) as topics, fresh_keyspace(topics, "test_metrics") as ours:
        seed(ours, klines)
        through_proxy = ours.model_copy(update={"cassandra_port": proxy.port})
        env = process_env(through_proxy, stream_metrics_port=port)
        command = [KLINESTREAM, "stream", "--name", name, "--model-dir", str(model_dir), "--max-offsets", "50"]
        with log_file.open("ab") as out:
            stream = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:

            def decided() -> bool:
                try:
                    samples = scrape(f"{base}/metrics")
                except OSError:
                    return False
                lags.append(total(samples, "klinestream_kafka_consumer_lag"))
                return total(samples, "klinestream_decisions_total") >= HOURS

            wait(decided, 420, f"{HOURS} decisions in /metrics", log_file)
            lag_series = ("klinestream_kafka_consumer_lag", (("partition", "0"), ("topic", ours.kafka_topic_klines)))
            wait(lambda: scrape(f"{base}/metrics").get(lag_series) == 0, 30, "lag 0", log_file)
            samples = scrape(f"{base}/metrics")
            rows = {table: read_rows(ours, table, TRADER) for table in ("decisions", "orders", "positions")}
            check_metrics(samples, rows)
            assert max(lags) > 0, "the lag never showed the replay waiting in Kafka"

            wait(lambda: ready(base)[0], 60, "/ready true", log_file)
            proxy.stop()
            wait(lambda: not ready(base)[0], 60, "/ready false while Cassandra is unreachable", log_file)
            body = ready(base)[1]
            assert body["checks"]["cassandra"]["ok"] is False and body["checks"]["kafka"]["ok"] is True, body
            proxy.start()
            wait(lambda: ready(base)[0], 90, "/ready true once Cassandra is back", log_file)
        finally:
            proxy.stop()
            stream.send_signal(signal.SIGTERM)
            try:
                stream.wait(timeout=120)
            except subprocess.TimeoutExpired:
                stream.kill()
            shutil.rmtree(settings.home / "checkpoints" / name, ignore_errors=True)


def check_metrics(samples: dict[Any, float], rows: dict[str, list[dict[str, Any]]]) -> None:
    decisions, orders, positions = rows["decisions"], rows["orders"], rows["positions"]
    assert len(decisions) == HOURS
    actions = collections.Counter(("hold", "buy", "sell")[d["action"]] for d in decisions)
    for action, count in actions.items():
        assert total(samples, "klinestream_decisions_total", action=action) == count, action
    statuses = collections.Counter(o["status"] for o in orders)
    assert statuses and sum(statuses.values()) == len(orders)
    for status, count in statuses.items():
        assert total(samples, "klinestream_orders_total", status=status) == count, status
    assert total(samples, "klinestream_orders_total") == len(orders)
    last = positions[-1]
    trader = {"trader_id": TRADER, "symbol": TRADED}
    assert total(samples, "klinestream_equity", **trader) == pytest.approx(last["equity"], rel=1e-12)
    assert total(samples, "klinestream_cash", **trader) == pytest.approx(last["cash"], rel=1e-12)
    assert total(samples, "klinestream_position_units", **trader) == pytest.approx(last["units"], rel=1e-12)
    versions = {d["model_version"] for d in decisions}
    assert versions == {"1"}
    assert total(samples, "klinestream_model_info", trader_id=TRADER, model_version="1") == 1
    assert total(samples, "klinestream_online_updates", trader_id=TRADER) == decisions[-1]["online_updates"]
    assert total(samples, "klinestream_decision_latency_seconds_count") == HOURS
    assert total(samples, "klinestream_decision_latency_seconds_bucket", le="+Inf") == HOURS
    assert total(samples, "klinestream_decision_latency_seconds_sum") > 0
    assert total(samples, "klinestream_micro_batch_duration_seconds_count") >= 2
