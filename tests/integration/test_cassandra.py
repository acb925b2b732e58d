"""Cassandra round trip: a keyspace and table are created, rows are upserted and read back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from models.credentials import CassandraRole
from models.settings import Settings
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration


@pytest.fixture
def session(stack: StackHandle, settings: Settings) -> Iterator[Any]:
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy

    from adapters.cassandra.session import auth_provider

    stack.require("cassandra")
    cluster = Cluster(
        list(settings.cassandra_hosts),
        port=settings.cassandra_port,
        protocol_version=5,
        auth_provider=auth_provider(settings, CassandraRole.ADMIN),
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc="datacenter1"),
    )
    keyspace = f"test_{uuid.uuid4().hex[:12]}"
    db = cluster.connect()
    try:
        db.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        )
        db.set_keyspace(keyspace)
        yield db
        db.execute(f"DROP KEYSPACE {keyspace}")
    finally:
        cluster.shutdown()


def test_rows_written_are_read_back_and_an_upsert_under_the_same_key_writes_nothing_twice(session: Any) -> None:
    session.execute(
        "CREATE TABLE decisions (model_version int, symbol text, decision_hour bigint, action int, price double, "
        "PRIMARY KEY ((model_version, symbol), decision_hour))"
    )
    insert = session.prepare(
        "INSERT INTO decisions (model_version, symbol, decision_hour, action, price) VALUES (?, ?, ?, ?, ?)"
    )
    rows = [(3, "BTCUSDT", 1_672_531_200_000 + h * 3_600_000, h % 3, 16_500.0 + h) for h in range(24)]
    for row in rows:
        session.execute(insert, row)
    session.execute(insert, rows[5])  # a replayed micro-batch: same key, same values

    read = session.execute(
        "SELECT model_version, symbol, decision_hour, action, price FROM decisions "
        "WHERE model_version = 3 AND symbol = 'BTCUSDT'"
    )
    assert [tuple(r) for r in read] == rows
    release = session.execute("SELECT release_version FROM system.local").one()
    assert release.release_version.startswith("5.0")
