"""Fixtures of the integration tests: the real local services, started once per test session.

``stack.require("kafka", ...)`` brings services up through ``klinestream.stack`` (idempotent: services
already running and healthy are reused). Services that test sessions started are stopped when they end,
unless ``KLINESTREAM_KEEP_STACK=1`` (handy while iterating: the next session finds them running). Sessions
sharing one working tree cooperate: the last one to finish stops them (see :class:`StackHandle`).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psutil
import pytest

from klinestream.stack import control, jvm
from klinestream.stack.process import exclusive_lock
from klinestream.stack.services import build_services
from models.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: the jars each service (or Spark) needs before it can start
_BUNDLES = {"kafka": ("kafka",), "cassandra": ("cassandra",), "spark": ("spark-kafka",)}


class StackHandle:
    """Brings the services a test needs up once; the last test session to finish stops what tests started.

    Each live session holds a lease file in ``<home>/stack/test-sessions/``; services started by any test
    session are listed there too. When a session ends and no other session holds a lease, it stops the
    listed services (never those a person started with ``klinestream stack up``).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ready: set[str] = set()
        self._dir = settings.stack_dir / "test-sessions"
        self._lock = self._dir / ".lock"
        self._lease = self._dir / f"{os.getpid()}.lease"
        self._started = self._dir / "started-by-tests"

    def require(self, *names: str) -> None:
        """Make sure ``names`` (services, or ``spark`` for the connector jars) are installed and answering."""
        missing = [n for n in names if n not in self._ready]
        with exclusive_lock(self._lock):
            self._lease.touch()
        bundles = [b for n in missing for b in _BUNDLES.get(n, ())]
        if bundles:
            jvm.install(self.settings.jvm_dir, bundles)
        wanted = [n for n in missing if n != "spark"]
        # build_services(settings, []) means "every service": only ask for the ones this test needs
        services = build_services(self.settings, wanted) if wanted else []
        if services:
            results = control.up(services, report=log.info)
            started = [r.name for r in results if r.action is control.Action.START]
            if started:
                with exclusive_lock(self._lock):
                    self._started.write_text("\n".join(sorted({*self._started_names(), *started})) + "\n")
        self._ready.update(missing)

    def _started_names(self) -> list[str]:
        return self._started.read_text().split() if self._started.exists() else []

    def _other_sessions(self) -> list[int]:
        """Pids of other live sessions holding a lease (the leases of dead sessions are removed)."""
        live = []
        for lease in self._dir.glob("*.lease"):
            pid = int(lease.stem) if lease.stem.isdigit() else -1
            if pid != os.getpid() and psutil.pid_exists(pid):
                live.append(pid)
            elif pid != os.getpid():
                lease.unlink(missing_ok=True)
        return live

    def release(self) -> None:
        """End this session's use; stop what tests started if no other session still uses the stack."""
        if not self._dir.exists():
            return
        with exclusive_lock(self._lock):
            self._lease.unlink(missing_ok=True)
            names = self._started_names()
            if os.environ.get("KLINESTREAM_KEEP_STACK") == "1":
                log.info("KLINESTREAM_KEEP_STACK=1: leaving %s running", names)
            elif others := self._other_sessions():
                log.info("test sessions %s still use the stack: leaving %s running", others, names)
            elif names:
                control.down(build_services(self.settings, names))
                self._started.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The platform settings, from the environment (``KLINESTREAM_*``), ``.env`` and the stack's secrets file
    (generated here when the stack has none yet, as ``klinestream stack up`` does). MLflow calls of the tests
    act as the writer account."""
    from adapters.mlflow.accounts import use_account
    from klinestream.stack.secrets import ensure_secrets
    from models.credentials import MlflowAccount

    ours = ensure_secrets(load_settings())
    use_account(ours, MlflowAccount.WRITER)
    return ours


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[StackHandle]:
    """The local service stack; call ``stack.require(...)`` for the services a test needs."""
    handle = StackHandle(settings)
    try:
        yield handle
    finally:
        handle.release()


@pytest.fixture
def kafka_topic(stack: StackHandle, settings: Settings) -> Iterator[str]:
    """A fresh single-partition topic on the running broker, deleted after the test."""
    from adapters.kafka import delete_topics, ensure_topics

    stack.require("kafka")
    name = f"test.{uuid.uuid4().hex[:12]}"
    ensure_topics(settings, [name])
    yield name
    delete_topics(settings, [name], client_id="klinestream-tests")


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


@pytest.fixture
def keyspace_settings(request: pytest.FixtureRequest, stack: StackHandle, settings: Settings) -> Iterator[Settings]:
    """``settings`` on a throwaway Cassandra keyspace named after the test module, dropped after the test."""
    from tests.integration.live_stream_helpers import fresh_keyspace

    stack.require("cassandra")
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with fresh_keyspace(settings, f"test_{module}"[:24]) as ours:
        yield ours


@pytest.fixture(scope="module")
def module_keyspace_settings(
    request: pytest.FixtureRequest, stack: StackHandle, settings: Settings
) -> Iterator[Settings]:
    """Like :func:`keyspace_settings`, shared by the tests of one module."""
    from tests.integration.live_stream_helpers import fresh_keyspace

    stack.require("cassandra")
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with fresh_keyspace(settings, f"test_{module}"[:24]) as ours:
        yield ours
