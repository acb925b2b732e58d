"""Helpers of the live-path resilience tests (crash recovery, broker restart, parity, hot swap, shadow): a fresh
Cassandra keyspace per run, reading a trader's rows back, closing a live trader's connection, dropping the
keyspace afterwards, and registering a policy as a new version of a throwaway registered model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from models.config import AgentConfig, EnvConfig, TrainConfig
from models.kline import Kline
from models.policy import Policy
from models.settings import Settings

TRADED = "BTCUSDT"
#: Risk limits that never refuse an order of these tests (the backtest has none).
LOOSE_LIMITS: dict[str, float] = {"max_position_units": 1e9, "max_order_notional": 1e12, "daily_loss_limit": 1e12}


def new_keyspace(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextmanager
def keyspace_dropped_after(settings: Settings) -> Iterator[Settings]:
    """``settings`` with its keyspace provisioned (schema and the roles' grants, as the admin: the stream's
    role may not create it); the keyspace is dropped when the block ends."""
    from adapters.cassandra.provision import drop_keyspace, provision_keyspace

    provision_keyspace(settings)
    try:
        yield settings
    finally:
        drop_keyspace(settings)


@contextmanager
def fresh_keyspace(settings: Settings, prefix: str) -> Iterator[Settings]:
    """``settings`` on a new, unique Cassandra keyspace, dropped when the block ends."""
    with keyspace_dropped_after(settings.model_copy(update={"cassandra_keyspace": new_keyspace(prefix)})) as ours:
        yield ours


def read_rows(settings: Settings, table: str, trader_id: str, symbol: str = TRADED) -> list[dict[str, Any]]:
    """Every row of ``table`` of ``trader_id`` in the keyspace of ``settings``, in hour order."""
    from adapters.cassandra.reader import TradeReader
    from adapters.cassandra.session import CassandraSession
    from models.credentials import CassandraRole

    db = CassandraSession.connect(settings, CassandraRole.OPERATOR, max_outage_seconds=60)
    try:
        return TradeReader(db).read(table, trader_id, symbol)
    finally:
        db.close()


def trader_rows(trader: Any, table: str, symbol: str = TRADED) -> list[dict[str, Any]]:
    """Every row of ``table`` a live trader (streaming/live_trader.py) wrote, read on its own connection."""
    from adapters.cassandra.reader import TradeReader

    return TradeReader(trader.sink.db).read(table, trader.config.trader_id, symbol)


def close_trader(trader: Any) -> None:
    """Close a live trader's Cassandra connection (shared by its sink, checkpoint store and controls)."""
    trader.sink.db.close()


def register(uri: str, name: str, policy: Policy, klines: pd.DataFrame, folder: Path) -> int:
    """Log ``policy`` in a run of the tests experiment and register it as a new version of ``name``."""
    import mlflow

    from adapters.mlflow import tracking

    tracking.use_experiment(uri, "klinestream-tests")
    with mlflow.start_run(tags=tracking.run_tags(policy.variant, 0, "hot-swap", "hot-swap")):
        mlflow.log_params(tracking.training_params(AgentConfig(variant=policy.variant), EnvConfig(), TrainConfig(),
                                                   policy))  # fmt: skip
        model_uri = tracking.log_policy_model(policy.save(folder / uuid.uuid4().hex), klines)
    return tracking.register_model(uri, model_uri, name, {"variant": policy.variant})


def by_hour(klines: list[Kline]) -> list[Kline]:
    return sorted(klines, key=lambda k: (k.open_time, k.symbol))  # as the ingestor publishes them
