"""Shadow mode and the live monitor on real services (Kafka → Spark job → traders → Cassandra, MLflow registry):

- a replay with a champion and a challenger records both decision streams, orders only for the champion, and the
  challenger's hypothetical P&L, equal to what a trader of the challenger makes with the same fees and slippage;
- a deliberately bad champion (a policy that churns: a round trip every two hours at 0.5 % a side) trails cash,
  buy-and-hold and the shadow challenger over the monitor's window: the monitor alerts, rolls back to ``previous``
  (auto rollback on), the versions carry ``monitor.*`` tags saying why (read through MLflow's REST API), and the
  running stream swaps to the restored champion."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import torch

from models.alerts import Alert
from models.config import EnvConfig
from models.credentials import KafkaPrincipal
from models.kline import HOUR_MS
from models.settings import Settings
from tests.integration.live_helpers import live_topics, seed
from tests.integration.live_stream_helpers import (
    LOOSE_LIMITS,
    by_hour,
    keyspace_dropped_after,
    new_keyspace,
    read_rows,
    register,
)
from tests.registry_helpers import mlflow_login
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WARMUP = 33  # hours before the first state (24 h of rolling features + a 10 h window - 1)


def version_tags(uri: str, name: str, version: int) -> dict[str, str]:
    """A version's tags through MLflow's REST API (what the UI shows)."""
    response = requests.get(f"{uri}/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version},
                            auth=mlflow_login(), timeout=10)  # fmt: skip
    response.raise_for_status()
    return {t["key"]: t["value"] for t in response.json()["model_version"].get("tags", [])}


def champion_alias(uri: str, name: str) -> str:
    response = requests.get(f"{uri}/api/2.0/mlflow/registered-models/alias", params={"name": name, "alias": "champion"},
                            auth=mlflow_login(), timeout=10)  # fmt: skip
    response.raise_for_status()
    return str(response.json()["model_version"]["version"])


class AlertList:
    def __init__(self) -> None:
        self.items: list[Alert] = []

    def emit(self, alert: Alert) -> None:
        self.items.append(alert)


def test_a_replay_with_a_challenger_records_both_streams_orders_only_for_the_champion_and_its_hypothetical_pnl(
    settings: Settings, stack: Any, spark: Any, tmp_path: Path
) -> None:
    from adapters.mlflow import aliases
    from adapters.mlflow.registry import registry_client
    from klinestream.commands.live import build_trader
    from models.broker import PaperBroker
    from streaming.online_learner import OnlineConfig
    from streaming.online_trader import OnlineTrader, TraderConfig
    from streaming.risk import RiskLimits
    from streaming.spark_job import StreamOptions, run_stream
    from tests.trader_fakes import MemoryCheckpoints, MemorySink, StaticModelSource, make_policy, market, to_klines

    stack.require("kafka", "cassandra", "mlflow", "spark")
    torch.set_num_threads(1)
    uri, name = settings.mlflow_tracking_uri, f"klinestream-test-shadow-{uuid.uuid4().hex[:8]}"
    frame = market(WARMUP + 96, seed=3)
    champion_policy, challenger_policy = make_policy(frame, seed=8), make_policy(frame, seed=0)  # both trade
    v1 = register(uri, name, champion_policy, frame, tmp_path)
    v2 = register(uri, name, challenger_policy, frame, tmp_path)
    client = registry_client(uri)
    aliases.promote(client, name, v1, "test", uri)
    aliases.set_challenger(client, name, v2)
    trader_id, shadow_id = "paper-BTCUSDT", "paper-BTCUSDT.shadow"
    changes = {"cassandra_keyspace": new_keyspace("test_shadow"), "mlflow_model_name": name,
               "shadow_challenger": True, "slippage_bps": 5.0, **LOOSE_LIMITS}  # fmt: skip
    with live_topics(settings, **changes) as live, keyspace_dropped_after(live):
        seed(live, by_hour(to_klines(frame)))
        traders: Any = build_trader(live, None, online=False)
        try:
            options = StreamOptions(name=f"shadow-{uuid.uuid4().hex[:6]}", available_now=True,
                                    max_offsets_per_trigger=60, checkpoint_dir=tmp_path / "checkpoint")  # fmt: skip
            outcomes: list[Any] = []
            run_stream(spark, live, traders, options, on_outcome=outcomes.append)
        finally:
            traders.close()
        rows = {(who, table): read_rows(live, table, who) for who in (trader_id, shadow_id)
                for table in ("decisions", "orders", "positions")}  # fmt: skip

    shadows = [o.trader_result.shadow for o in outcomes if o.trader_result is not None]
    assert len(shadows) >= 3 and {s.state for s in shadows} == {"traded"}
    champion_hours = [d["open_time"] for d in rows[trader_id, "decisions"]]
    assert len(champion_hours) == 96 and [d["open_time"] for d in rows[shadow_id, "decisions"]] == champion_hours
    assert {d["model_version"] for d in rows[trader_id, "decisions"]} == {str(v1)}
    assert {d["model_version"] for d in rows[shadow_id, "decisions"]} == {str(v2)}
    # orders: the champion's went to its (paper) broker; the challenger's are hypothetical, never sent
    assert rows[trader_id, "orders"] and {o["mode"] for o in rows[trader_id, "orders"]} == {"paper"}
    assert all(o["exchange_order_id"] for o in rows[trader_id, "orders"] if o["status"] == "filled")
    shadow_orders = rows[shadow_id, "orders"]
    assert {o["side"] for o in shadow_orders if o["status"] == "filled"} == {"BUY", "SELL"}
    assert {o["mode"] for o in shadow_orders} == {"shadow"} and not any(o["exchange_order_id"] for o in shadow_orders)

    # the hypothetical P&L: hour for hour, the account of a trader of v2 with the same fees and slippage
    sink = MemorySink()
    config = TraderConfig(trader_id=shadow_id, fee_rate=live.fee_rate, slippage_bps=live.slippage_bps,
                          online=OnlineConfig(enabled=False))  # fmt: skip
    own = OnlineTrader.start(config, StaticModelSource({str(v2): challenger_policy}, str(v2)),
                             PaperBroker(live.fee_rate, live.slippage_bps), sink, MemoryCheckpoints(),
                             RiskLimits.from_settings(live))  # fmt: skip
    own.process_batch(0, to_klines(frame))
    expected = [(p.open_time, p.units, p.cash, p.equity, p.fees_paid) for p in sink.rows("positions", shadow_id)]
    recorded = [(p["open_time"], p["units"], p["cash"], p["equity"], p["fees_paid"])
                for p in rows[shadow_id, "positions"]]  # fmt: skip
    assert recorded == expected
    assert recorded[-1][4] > 0.0 and recorded[-1][3] != rows[trader_id, "positions"][-1]["equity"]


def test_a_churning_champion_is_flagged_rolled_back_with_tags_saying_why_and_the_stream_swaps_back(
    settings: Settings, stack: Any, spark: Any, tmp_path: Path
) -> None:
    from adapters.kafka import build_producer
    from adapters.mlflow import aliases
    from adapters.mlflow.registry import registry_client
    from klinestream.commands.live import build_trader
    from streaming.spark_job import StreamOptions, start_stream
    from tests.trader_fakes import market, scripted_policy, to_klines

    stack.require("kafka", "cassandra", "mlflow", "spark")
    torch.set_num_threads(1)
    uri, name = settings.mlflow_tracking_uri, f"klinestream-test-monitor-{uuid.uuid4().hex[:8]}"
    window, after = 24, 18  # hours of the monitor's window; hours published after the rollback
    frame = market(WARMUP + window + 6 + after, seed=3)
    all_in = EnvConfig(accounting="portfolio", reward="log_return", position_step=1.0)
    good = register(uri, name, scripted_policy(frame, "hold", all_in), frame, tmp_path)
    bad = register(uri, name, scripted_policy(frame, "churn", all_in), frame, tmp_path)
    challenger = register(uri, name, scripted_policy(frame, "hold", all_in), frame, tmp_path)
    client = registry_client(uri)
    aliases.promote(client, name, good, "test", uri)
    aliases.promote(client, name, bad, "test", uri)  # good becomes previous
    aliases.set_challenger(client, name, challenger)
    klines = to_klines(frame)
    cut = int(frame["open_time"].min()) + (WARMUP + window + 6) * HOUR_MS
    changes = {"cassandra_keyspace": new_keyspace("test_monitor"), "mlflow_model_name": name, "fee_rate": 0.005,
               "shadow_challenger": True, "monitor_window_hours": window, "monitor_margin": 0.01,
               "monitor_auto_rollback": True, **LOOSE_LIMITS}  # fmt: skip
    alerts = AlertList()
    with live_topics(settings, **changes) as live, keyspace_dropped_after(live):
        traders: Any = build_trader(live, None, online=False, alerts=alerts)
        trader_id = traders.config.trader_id
        producer = build_producer(live, client_id="test-monitor-dlq", principal=KafkaPrincipal.STREAM)
        options = StreamOptions(name="monitor", trigger_seconds=1.0, max_offsets_per_trigger=30,
                                checkpoint_dir=tmp_path / "checkpoint")  # fmt: skip
        query = start_stream(spark, live, traders, options, producer)
        try:

            def decided() -> int:
                assert query.exception() is None, query.exception()
                return len(read_rows(live, "decisions", trader_id))

            seed(live, by_hour([k for k in klines if k.open_time < cut]))
            wait_for(lambda: decided() >= window + 6, 240)
            wait_for(lambda: champion_alias(uri, name) == str(good), 30)
            wait_for(lambda: traders.champion.model_source.current_version() == str(good), 10)
            seed(live, by_hour([k for k in klines if k.open_time >= cut]))
            wait_for(lambda: decided() >= window + 6 + after, 240)
        finally:
            query.stop()
            producer.close()
            traders.close()
        decisions = read_rows(live, "decisions", trader_id)

    kinds = [a.kind for a in alerts.items]
    assert kinds.count("champion_trailing") == 1 and kinds.count("champion_rolled_back") == 1, kinds
    trailing = next(a for a in alerts.items if a.kind == "champion_trailing")
    assert trailing.details["model_version"] == str(bad) and trailing.details["champion"] < -0.05
    assert trailing.details["challenger_version"] == str(challenger) and trailing.details["challenger"] == 0.0
    assert champion_alias(uri, name) == str(good)
    why = version_tags(uri, name, bad)
    assert why["monitor.condition"] == trailing.key == why["monitor.rolled_back_condition"]
    assert why["monitor.window_hours"] == str(window) and why["monitor.trader_id"] == trader_id
    assert float(why["monitor.champion_return"]) < -0.05 and float(why["monitor.challenger_return"]) == 0.0
    assert why["monitor.window_start"] < why["monitor.window_end"] and why["monitor.rolled_back_at"]
    assert "trailed cash by" in why["monitor.reason"] and why["gate.rolled_back"] == "true"
    restored = version_tags(uri, name, good)
    assert restored["monitor.restored_after"] == str(bad) and restored["gate.promoted_by"] == "rollback"
    versions = [d["model_version"] for d in decisions]
    assert versions[: window + 1] == [str(bad)] * (window + 1) and versions[-1] == str(good)
    assert [d["swapped_from"] for d in decisions if d["swapped_from"]] == [str(bad)]
