"""Alerts and the bot against the local Telegram Bot API stand-in, on the real services (issue 15, must-show 3).

Each event — the kill switch (set by the CLI), a daily-loss stop (a real trader on Cassandra), stale data, a
dead-letter burst (the micro-batch processor writing to Kafka's DLQ), a gate decision (MLflow) and a failed
DAG run (Airflow's ``dag.test()``) — produces exactly one message, however often it is seen. ``/kill`` from the
allowed chat, confirmed, stops a real trader's orders at its next micro-batch; the same from another chat is
refused and changes nothing. Every log record, captured at DEBUG, is checked for the bot token."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from models.credentials import CassandraRole, KafkaPrincipal
from models.kline import Kline
from models.settings import Settings
from simulator.telegram import TelegramStandIn
from tests.integration.live_helpers import live_topics
from tests.integration.live_process_helpers import KLINESTREAM, process_env
from tests.integration.live_stream_helpers import LOOSE_LIMITS, fresh_keyspace

pytestmark = pytest.mark.integration

TOKEN = "5550001:AAE-integration-token-that-must-never-be-logged"
CHAT, STRANGER = 4242, 9999
TRADER = "paper-BTCUSDT"


@pytest.fixture
def api(caplog: pytest.LogCaptureFixture) -> Iterator[TelegramStandIn]:
    caplog.set_level(logging.DEBUG)
    with TelegramStandIn(TOKEN) as stand_in:
        yield stand_in
    assert TOKEN not in caplog.text, "the bot token appeared in a log record"


def with_telegram(settings: Settings, api: TelegramStandIn, **more: Any) -> Settings:
    return settings.model_copy(update={"telegram_bot_token": SecretStr(TOKEN), "telegram_chat_ids": (CHAT,),
                                       "telegram_api_url": api.api_url, **more})  # fmt: skip


def messages(api: TelegramStandIn, word: str) -> list[str]:
    return [m["text"] for m in api.messages_to(CHAT) if word in m["text"]]


def monitor(settings: Settings, sink: Any, **sources: Any) -> Any:
    """The stream's monitor (streaming/monitoring.py) with the thresholds of ``settings``."""
    from prometheus_client import CollectorRegistry

    from streaming.metrics import StreamMetrics
    from streaming.monitoring import MonitorConfig, MonitorSources, StreamMonitor

    config = MonitorConfig(TRADER, settings.kafka_topic_klines, True, settings.stale_after_minutes,
                           settings.dead_letter_burst, settings.dead_letter_burst_minutes,
                           settings.daily_loss_limit)  # fmt: skip
    return StreamMonitor(config, StreamMetrics(CollectorRegistry()), sink, MonitorSources(**sources))


def test_the_kill_switch_and_stale_data_each_send_one_message(
    settings: Settings, stack: Any, api: TelegramStandIn
) -> None:
    from adapters.alerting import build_alert_sink
    from adapters.cassandra.controls import CassandraControls
    from adapters.cassandra.session import CassandraSession
    from streaming.monitoring import KillSwitchState

    stack.require("cassandra")
    with fresh_keyspace(settings, "test_tg_kill") as ours:
        db = CassandraSession.connect(ours, CassandraRole.STREAM, max_outage_seconds=60)
        sink = build_alert_sink(with_telegram(ours, api))
        try:
            controls = CassandraControls(db)
            watch = monitor(ours, sink, kill_switch=lambda: KillSwitchState(*controls.kill_switch_status(TRADER)))
            env = process_env(ours)
            for state in ("on", "off"):
                for _ in range(2):
                    watch.poll()
                done = subprocess.run([KLINESTREAM, "kill-switch", state, "--reason", "integration test"], env=env,
                                      capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
                assert done.returncode == 0, done.stderr
                for _ in range(3):
                    watch.poll()
            stale_at = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp() * 1000) - 1
            watch.metrics.kline_ages.saw("ETHUSDT", stale_at)  # ETHUSDT's newest kline closed 2023-01-01 00:00
            for _ in range(3):
                watch.poll()
        finally:
            sink.close()
            db.close()
    assert len(messages(api, "kill switch ON")) == 1 and len(messages(api, "kill switch off")) == 1
    stale = messages(api, "stale data")
    assert len(stale) == 1 and "no ETHUSDT kline for the hour 2023-01-01 00:00 UTC" in stale[0]


def records(klines: list[Kline], first_offset: int, topic: str) -> list[Any]:
    from streaming.dlq import RawRecord

    return [RawRecord(topic, 0, first_offset + i, k.symbol.encode(), k.to_json("test"), k.event_time + 500)
            for i, k in enumerate(klines)]  # fmt: skip


def test_a_daily_loss_stop_and_a_dead_letter_burst_each_send_one_message(
    settings: Settings, stack: Any, api: TelegramStandIn, tmp_path: Path
) -> None:
    from adapters.alerting import build_alert_sink
    from adapters.kafka import build_producer
    from streaming.dlq import RawRecord
    from streaming.live_trader import start_live_trader
    from streaming.model_source import DirectoryModelSource
    from streaming.spark_job import StreamOptions, build_processor
    from tests.registry_helpers import constant_policy, registry_klines
    from tests.trader_fakes import to_klines

    stack.require("kafka", "cassandra")
    frame = registry_klines()
    model = constant_policy(frame, 1).save(tmp_path / "models" / "1")  # always buys: each fill pays a fee
    first_two_days = frame[frame["open_time"] < int(frame["open_time"].min()) + 48 * 3_600_000]
    klines = sorted(to_klines(first_two_days), key=lambda k: (k.open_time, k.symbol))  # decisions: 09:00-23:00, day 2
    limits = {**LOOSE_LIMITS, "daily_loss_limit": 1e-6, "dead_letter_burst": 20}
    with live_topics(settings) as topics, fresh_keyspace(topics, "test_tg_loss") as ours:
        live = with_telegram(ours, api, **limits)
        sink = build_alert_sink(live)
        watch = monitor(live, sink)
        trader = start_live_trader(live, DirectoryModelSource({"1": model}, "1"), online=False, alerts=watch.alerts)
        producer = build_producer(live, client_id="test-tg-dlq", principal=KafkaPrincipal.STREAM)
        try:
            options = StreamOptions(checkpoint_dir=tmp_path / "checkpoint")
            processor = build_processor(live, trader, options, producer, watch.alerts)
            topic = live.kafka_topic_klines
            batches = [klines[i : i + 40] for i in range(0, len(klines), 40)]
            for batch_id, batch in enumerate(batches):
                watch.on_outcome(processor.process(batch_id, records(batch, batch_id * 40, topic)))
            refused = [o for o in trader.sink.db.run(f"SELECT reason FROM {live.cassandra_keyspace}.orders", ())
                       if o.reason == "daily_loss_limit"]  # fmt: skip
            assert len(refused) > 1, "the stop refused fewer than two buys: the test would not show one message"
            garbage = [RawRecord(topic, 0, 10_000 + i, b"BTCUSDT", b"{not json", 0) for i in range(25)]
            for batch_id, part in ((len(batches), garbage[:12]), (len(batches) + 1, garbage[12:])):
                watch.on_outcome(processor.process(batch_id, part))
        finally:
            producer.close()
            trader.sink.db.close()
            sink.close()
    assert len(messages(api, "daily loss stop")) == 1
    burst = messages(api, "dead letter burst")
    assert len(burst) == 1 and "25 records dead-lettered" in burst[0]


def test_each_gate_decision_sends_one_message(settings: Settings, stack: Any, api: TelegramStandIn,
                                             tmp_path: Path) -> None:  # fmt: skip
    import uuid

    from adapters.alerting import build_alert_sink
    from models.time_range import parse_range
    from pipelines import promotion
    from pipelines.retrain_config import GateConfig
    from tests.integration.test_mlflow_registry import register
    from tests.registry_helpers import TEST_RANGE, constant_policy, registry_klines

    stack.require("mlflow")
    uri, name = settings.mlflow_tracking_uri, f"klinestream-test-{uuid.uuid4().hex[:10]}"
    uptrend = registry_klines(drift=0.002, vol=0.004, seed=5)
    sink = build_alert_sink(with_telegram(settings, api))
    gate = GateConfig(sharpe_margin=0.1, max_drawdown=0.5, min_trades=0)
    try:
        for action in (0, 1, 0):  # stay out (below the cash baseline), buy (first champion), stay out (rejected)
            version = register(uri, name, constant_policy(uptrend, action), uptrend, tmp_path)
            promotion.gate_version(uri, name, version, uptrend, parse_range(TEST_RANGE), gate, alerts=sink)
    finally:
        sink.close()
    sent = messages(api, "gate decision")
    assert len(sent) == 3
    assert "v1 rejected" in sent[0]  # the gate demands beating cash after fees, even with no champion
    assert "v2 promoted to champion (no champion before)" in sent[1] and "v3 rejected" in sent[2]


def test_a_failed_dag_run_sends_one_message(
    airflow_home: Path, api: TelegramStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from klinestream.airflow_dags import load_dag
    from models.synthetic import random_walk_klines
    from pipelines.dag_alerts import on_dag_failure
    from tests.market_data import ms, running_simulator

    for name, value in (("TELEGRAM_BOT_TOKEN", TOKEN), ("TELEGRAM_CHAT_IDS", str(CHAT)),
                        ("TELEGRAM_API_URL", api.api_url), ("SYMBOLS", "BTCUSDT,ETHUSDT")):  # fmt: skip
        monkeypatch.setenv(f"KLINESTREAM_{name}", value)
    monkeypatch.setenv("KLINESTREAM_LAKE_DIR", str(airflow_home / "lake-tg"))
    monkeypatch.delenv("KLINESTREAM_DATA_DIR", raising=False)
    assert load_dag("dqn_retrain").on_failure_callback is on_dag_failure
    dag = load_dag("klines_backfill")
    assert dag.on_failure_callback is on_dag_failure
    for task in dag.tasks:
        task.retries = 0  # fail at once instead of retrying for minutes
    with running_simulator(random_walk_klines(["BTCUSDT", "ETHUSDT"], ms("2022-03-04T00:00"), 6)) as sim:
        monkeypatch.setenv("KLINESTREAM_BINANCE_BASE_URL", sim.base_url)
        dag_run = dag.test(logical_date=datetime(2022, 3, 9, 6, tzinfo=UTC))  # an hour the exchange lacks
    assert dag_run.state == "failed"
    failed = messages(api, "dag failed")
    assert len(failed) == 1 and "DAG klines_backfill" in failed[0] and "fetch_raw" in failed[0]


def test_kill_from_the_allowed_chat_stops_orders_at_the_next_batch_and_another_chat_changes_nothing(
    settings: Settings, stack: Any, api: TelegramStandIn, tmp_path: Path
) -> None:
    from adapters.cassandra.controls import CassandraControls
    from adapters.cassandra.session import CassandraSession
    from klinestream.bot.app import BotThread, KlinestreamBot
    from klinestream.bot.backend import OpsBackend
    from streaming.live_trader import start_live_trader
    from streaming.model_source import DirectoryModelSource
    from tests.registry_helpers import constant_policy, registry_klines
    from tests.trader_fakes import hourly_batches, to_klines

    stack.require("cassandra")
    frame = registry_klines()
    model = constant_policy(frame, 1).save(tmp_path / "models" / "1")
    batches = hourly_batches(sorted(to_klines(frame), key=lambda k: (k.open_time, k.symbol)), 3)
    with fresh_keyspace(settings, "test_tg_bot") as ours:
        live = with_telegram(ours, api, **LOOSE_LIMITS)
        trader = start_live_trader(live, DirectoryModelSource({"1": model}, "1"), online=False)
        db = CassandraSession.connect(live, CassandraRole.STREAM, max_outage_seconds=60)
        bot = BotThread(KlinestreamBot(OpsBackend(live, db), (CHAT,)).application(TOKEN, api.api_url)).start()
        try:
            statuses = [process(trader, i, b) for i, b in enumerate(batches[:13])]  # decisions from batch 11
            assert statuses[-1] == {"filled"}, statuses
            api.send_user_message(STRANGER, "/kill")
            api.press_button(STRANGER, "kill:yes")
            api.send_user_message(CHAT, "/kill")
            api.wait_for(lambda a: any(m.get("reply_markup") for m in a.messages_to(CHAT)))
            assert api.messages_to(STRANGER) == [] and not CassandraControls(db).kill_switch_active()
            time.sleep(1.1)  # past the trader's kill-switch cache: the stranger changed nothing
            assert process(trader, 13, batches[13]) == {"filled"}
            api.press_button(CHAT, "kill:yes")
            api.wait_for(lambda a: any("Kill switch ON" in m["text"] for m in a.messages_to(CHAT)))
            assert CassandraControls(db).kill_switch_active()
            time.sleep(1.1)
            assert process(trader, 14, batches[14]) == {"rejected"}  # the next micro-batch sends no order
            api.send_user_message(STRANGER, "/resume")
            api.press_button(STRANGER, "resume:yes")
            api.send_user_message(CHAT, "/status")
            api.wait_for(lambda a: any("KILL SWITCH ON" in m["text"] for m in a.messages_to(CHAT)))
            assert CassandraControls(db).kill_switch_active() and api.messages_to(STRANGER) == []
        finally:
            bot.stop()
            db.close()
            trader.sink.db.close()


def process(trader: Any, batch_id: int, batch: list[Kline]) -> set[str]:
    """The statuses of the orders of one micro-batch (empty when it decided nothing)."""
    return {o.status for o in trader.process_batch(batch_id, batch).orders}
