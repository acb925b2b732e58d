"""``klinestream demo`` end to end in its quickest configuration, on real klines of a few weeks.

The gate is made impossible to pass, so the test covers the demo's explicit promotion (the gate path
itself is dqn_retrain's, tested in test_dqn_retrain_dag.py).

Real Kafka, Cassandra, MLflow, Spark and Airflow's ``dag.test()``: the backfill pipeline and the
klines_backfill DAG fill a temporary lake, dqn_retrain trains both variants (tiny), the gate (or the
demo's explicit promotion) names a champion, and three days of January 2023 are replayed through
simulator → ingestor → Kafka → Spark → online trader → Cassandra. The summary's numbers must be what
Cassandra holds, read back here with plain CQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from models.credentials import CassandraRole
from models.kline import HOUR_MS
from models.settings import Settings
from tests.integration.conftest import StackHandle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JAN_1 = 1_672_531_200_000
REPLAY_HOURS = 72


@pytest.fixture
def demo_settings(settings: Settings, stack: StackHandle, tmp_path: Path) -> Iterator[Settings]:
    """A fresh lake, keyspace and registered model, so the test moves nothing a user has."""
    from adapters.cassandra.provision import provision_keyspace
    from adapters.cassandra.session import connect_cluster

    stack.require("kafka", "cassandra", "mlflow", "spark")
    tag = uuid.uuid4().hex[:8]
    changes = {"lake_dir": tmp_path / "lake", "cassandra_keyspace": f"test_demo_{tag}",
               "mlflow_model_name": f"klinestream-demo-test-{tag}", "device": "cpu"}  # fmt: skip
    ours = settings.model_copy(update=changes)
    provision_keyspace(ours)  # the admin path: the demo's stream role may not create a keyspace
    yield ours
    cluster, session = connect_cluster(settings, CassandraRole.ADMIN, max_outage_seconds=30)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {changes['cassandra_keyspace']}", timeout=120)
    finally:
        cluster.shutdown()


def cql(settings: Settings, query: str, *params: Any) -> list[Any]:
    from adapters.cassandra.session import connect_cluster

    cluster, session = connect_cluster(settings, CassandraRole.ADMIN, max_outage_seconds=30)
    try:
        return list(session.execute(query.format(ks=settings.cassandra_keyspace), params, timeout=60))
    finally:
        cluster.shutdown()


def test_quick_demo_promotes_explicitly_when_the_gate_rejects_all_trades_every_hour_and_matches_cassandra(
    airflow_home: Path, demo_settings: Settings, spark: Any, shared_klines_dir: Path
) -> None:
    from adapters.mlflow.registry import CHAMPION, alias_version, registry_client
    from klinestream.demo import DemoConfig, run_demo

    config = DemoConfig(
        data_dir=shared_klines_dir,
        backfill_range="2022-12-01:2023-01-05",
        train_range="2022-12-08:2023-01-01",
        test_range="2023-01-01:2023-01-04",
        # a gate nothing can pass (100,000 trades in 3 days): the demo must promote explicitly and say so
        training={"episodes": 1, "episode_hours": 48, "n_envs": 2, "gate_min_trades": 100_000},
        speed=12.0,
        live_timeout_s=240,
        services=("kafka", "cassandra", "mlflow"),
        dashboard_port=None,
    )
    summary = run_demo(demo_settings, config, console=Console(width=120), spark=spark)

    assert summary.complete, summary.steps
    assert [s[0] for s in summary.steps] == ["stack", "klines", "backfill", "validate", "retrain", "promote", "live"]
    assert summary.data_label.startswith("real klines from files")
    champion = alias_version(demo_settings.mlflow_tracking_uri, demo_settings.mlflow_model_name, CHAMPION)
    figures = summary.figures
    assert champion is not None and figures is not None and figures.model_versions == (str(champion),)
    assert summary.promotion_note.startswith("NO version passed the gate")
    assert f"promoted v{champion} " in summary.promotion_note and "EXPLICITLY" in summary.promotion_note
    client = registry_client(demo_settings.mlflow_tracking_uri)
    versions = client.search_model_versions(f"name='{demo_settings.mlflow_model_name}'")
    tags = {int(v.version): dict(v.tags) for v in versions}
    assert all(t["gate.decision"] == "rejected" for t in tags.values())
    assert tags[champion]["gate.promoted_by"] == "demo-explicit"
    assert float(tags[champion]["gate.challenger.sharpe"]) == max(
        float(t["gate.challenger.sharpe"]) for t in tags.values()
    )

    trader, symbol = summary.trader_id, demo_settings.traded_symbol
    end = JAN_1 + REPLAY_HOURS * HOUR_MS
    hours = cql(demo_settings, "SELECT open_time FROM {ks}.decisions WHERE trader_id = %s AND symbol = %s "
                "AND open_time >= %s AND open_time < %s", trader, symbol, JAN_1, end)  # fmt: skip
    assert sorted(r.open_time for r in hours) == list(range(JAN_1, end, HOUR_MS))
    assert figures.decisions == REPLAY_HOURS == figures.hours
    orders = cql(demo_settings, "SELECT status FROM {ks}.orders WHERE trader_id = %s AND symbol = %s "
                 "AND open_time >= %s AND open_time < %s", trader, symbol, JAN_1, end)  # fmt: skip
    assert figures.orders == len(orders) and figures.filled == sum(1 for o in orders if o.status == "filled")
    marks = cql(demo_settings, "SELECT open_time, equity, buy_hold_equity FROM {ks}.positions WHERE trader_id = %s "
                "AND symbol = %s AND open_time < %s", trader, symbol, end)  # fmt: skip
    before = [m for m in marks if m.open_time < JAN_1]
    start_equity = before[-1].equity if before else 100_000.0
    assert figures.pnl == pytest.approx(marks[-1].equity - start_equity)
    assert marks[-1].open_time == end - HOUR_MS
    assert len(summary.latencies_ms) == REPLAY_HOURS and all(0 < ms < 120_000 for ms in summary.latencies_ms)
