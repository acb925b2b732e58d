"""Fixtures of the integration tests: the real local services, started once per test session.

``stack.require("kafka", ...)`` brings services up through ``klinestream.stack`` (idempotent: services
already running and healthy are reused). Services that this test session started are stopped when it ends,
unless ``KLINESTREAM_KEEP_STACK=1`` (handy while iterating: the next session finds them running).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from klinestream.stack import control, jvm
from klinestream.stack.services import Service, build_services
from models.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: the jars each service (or Spark) needs before it can start
_BUNDLES = {"kafka": ("kafka",), "cassandra": ("cassandra",), "spark": ("spark-kafka",)}


class StackHandle:
    """Brings the services a test needs up once, and remembers which ones this session started."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started: list[Service] = []
        self._ready: set[str] = set()

    def require(self, *names: str) -> None:
        """Make sure ``names`` (services, or ``spark`` for the connector jars) are installed and answering."""
        missing = [n for n in names if n not in self._ready]
        bundles = [b for n in missing for b in _BUNDLES.get(n, ())]
        if bundles:
            jvm.install(self.settings.jvm_dir, bundles)
        services = build_services(self.settings, [n for n in missing if n != "spark"])
        if services:
            results = control.up(services, report=log.info)
            by_name = {s.name: s for s in services}
            self.started += [by_name[r.name] for r in results if r.action is control.Action.START]
        self._ready.update(missing)

    def stop_started(self) -> None:
        if os.environ.get("KLINESTREAM_KEEP_STACK") == "1":
            log.info("KLINESTREAM_KEEP_STACK=1: leaving %s running", [s.name for s in self.started])
            return
        control.down(self.started)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The platform settings, from the environment (``KLINESTREAM_*``) and ``.env``."""
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[StackHandle]:
    """The local service stack; call ``stack.require(...)`` for the services a test needs."""
    handle = StackHandle(settings)
    try:
        yield handle
    finally:
        handle.stop_started()


@pytest.fixture
def kafka_topic(stack: StackHandle, settings: Settings) -> Iterator[str]:
    """A fresh single-partition topic on the running broker, deleted after the test."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    stack.require("kafka")
    name = f"test.{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="klinestream-tests")
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        yield name
        admin.delete_topics([name])
    finally:
        admin.close()


@pytest.fixture(scope="session")
def spark(stack: StackHandle, settings: Settings) -> Iterator[SparkSession]:
    """One local SparkSession with the Kafka connector for the whole test session."""
    from streaming.spark_session import build_spark_session

    stack.require("spark")
    session = build_spark_session(settings, "klinestream-integration-tests")
    try:
        yield session
    finally:
        session.stop()
