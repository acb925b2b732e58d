"""The local stack is locked: Kafka, Cassandra and MLflow refuse a client without credentials (or with
wrong ones), each principal can do only its part, and no service process holds a secret it does not need."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from models.credentials import CassandraRole, KafkaPrincipal, MlflowAccount
from models.settings import Settings
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration


def _kafka_admin(settings: Settings, **security: Any) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="test-unauthenticated",
        request_timeout_ms=5000,
        api_version_auto_timeout_ms=5000,
        **security,
    )


def test_kafka_refuses_a_client_without_credentials_or_with_a_wrong_password(
    stack: StackHandle, settings: Settings
) -> None:
    from kafka.errors import KafkaError

    stack.require("kafka")
    with pytest.raises(KafkaError):  # PLAINTEXT against the SASL listener: no broker answers
        _kafka_admin(settings).list_topics()
    writer = settings.kafka_credentials(KafkaPrincipal.WRITER)
    assert writer is not None, "the stack's Kafka has no passwords in the settings"
    wrong = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
             "sasl_plain_username": writer.username, "sasl_plain_password": "not-the-password-0123"}  # fmt: skip
    with pytest.raises(KafkaError):
        _kafka_admin(settings, **wrong).list_topics()


def test_kafka_principals_may_only_do_their_part_and_no_topic_is_created_on_demand(
    stack: StackHandle, settings: Settings, kafka_topic: str
) -> None:
    from kafka.errors import KafkaError, TopicAuthorizationFailedError

    from adapters.kafka import admin_client, build_producer, client_config

    stack.require("kafka")
    stream = build_producer(settings, "test-stream-writes-klines", KafkaPrincipal.STREAM, max_block_ms=10_000)
    try:  # the stream reads klines.1h and writes the DLQ: it may not publish klines
        with pytest.raises(TopicAuthorizationFailedError):
            stream.send(settings.kafka_topic_klines, key=b"BTCUSDT", value=b"{}").get(timeout=30)
    finally:
        stream.close()
    writer = build_producer(settings, "test-writer", KafkaPrincipal.WRITER, max_block_ms=5_000)
    missing = f"test.never-created.{uuid.uuid4().hex[:8]}"
    try:
        writer.send(kafka_topic, value=b"granted").get(timeout=30)  # the fixture's topic carries ACLs
        with pytest.raises(KafkaError):  # auto.create.topics.enable=false, and no CREATE ACL
            writer.send(missing, value=b"x").get(timeout=30)
    finally:
        writer.close()
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    ingestor = KafkaAdminClient(**client_config(settings, KafkaPrincipal.INGESTOR, client_id="test-ingestor"))
    try:
        with pytest.raises(KafkaError):
            ingestor.create_topics([NewTopic(missing, 1, 1)])
    finally:
        ingestor.close()
    admin = admin_client(settings)
    try:
        assert missing not in admin.list_topics()
    finally:
        admin.close()


def test_cassandra_refuses_anonymous_and_default_logins_and_readers_cannot_write(
    stack: StackHandle, keyspace_settings: Settings
) -> None:
    from cassandra import Unauthorized
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster, NoHostAvailable

    from adapters.cassandra.provision import auth_failed
    from adapters.cassandra.session import CassandraSession

    settings = keyspace_settings
    for provider in (None, PlainTextAuthProvider(username="cassandra", password="cassandra")):
        cluster = Cluster(list(settings.cassandra_hosts), port=settings.cassandra_port, protocol_version=5,
                          auth_provider=provider, connect_timeout=10)  # fmt: skip
        try:
            with pytest.raises(NoHostAvailable) as refused:
                cluster.connect()
            assert auth_failed(refused.value) or "authentication" in str(refused.value).lower(), refused.value
        finally:
            cluster.shutdown()
    db = CassandraSession.connect(settings, CassandraRole.DASHBOARD, max_outage_seconds=30)
    try:
        keyspace = settings.cassandra_keyspace
        db.session.execute(f"SELECT * FROM {keyspace}.decisions LIMIT 1")  # it reads
        with pytest.raises(Unauthorized):  # it may not rewrite the trade log
            db.session.execute(
                f"DELETE FROM {keyspace}.decisions WHERE trader_id = 'paper-BTCUSDT' AND symbol = 'BTCUSDT'"
            )
        with pytest.raises(Unauthorized):  # nor touch the schema
            db.session.execute(f"DROP TABLE {keyspace}.orders")
    finally:
        db.close()


def test_mlflow_refuses_anonymous_calls_and_the_stream_account_cannot_move_an_alias(
    stack: StackHandle, settings: Settings
) -> None:
    stack.require("mlflow")
    base = settings.mlflow_tracking_uri.rstrip("/")
    search = f"{base}/api/2.0/mlflow/registered-models/search"
    assert requests.get(search, timeout=30).status_code == 401
    writer, stream = (settings.mlflow_credentials(a) for a in (MlflowAccount.WRITER, MlflowAccount.STREAM))
    assert writer is not None and stream is not None, "the stack's MLflow has no passwords in the settings"
    assert requests.get(search, auth=(writer.username, "wrong-password-0123"), timeout=30).status_code == 401

    name = f"klinestream-auth-test-{uuid.uuid4().hex[:8]}"
    as_writer = (writer.username, writer.secret())
    created = requests.post(f"{base}/api/2.0/mlflow/registered-models/create", json={"name": name},
                            auth=as_writer, timeout=30)  # fmt: skip
    assert created.ok, created.text
    try:
        as_stream = (stream.username, stream.secret())
        assert requests.get(f"{base}/api/2.0/mlflow/registered-models/get", params={"name": name},
                            auth=as_stream, timeout=30).ok  # fmt: skip
        alias = {"name": name, "alias": "champion", "version": "1"}
        moved = requests.post(f"{base}/api/2.0/mlflow/registered-models/alias", json=alias, auth=as_stream, timeout=30)
        assert moved.status_code == 403, moved.text
    finally:
        requests.delete(f"{base}/api/2.0/mlflow/registered-models/delete", json={"name": name},
                        auth=as_writer, timeout=30)  # fmt: skip


def test_the_stream_account_may_move_the_alias_only_when_auto_rollback_is_on(
    stack: StackHandle, settings: Settings
) -> None:
    """The live monitor's rollback is the stream's call to make only when KLINESTREAM_MONITOR_AUTO_ROLLBACK is set
    at ``stack up`` (the admin path grants EDIT then); provisioning again without it takes the right back."""
    from adapters.mlflow.accounts import provision_accounts

    stack.require("mlflow")
    base = settings.mlflow_tracking_uri.rstrip("/")
    writer, stream = (settings.mlflow_credentials(a) for a in (MlflowAccount.WRITER, MlflowAccount.STREAM))
    assert writer is not None and stream is not None, "the stack's MLflow has no passwords in the settings"
    name = f"klinestream-auth-test-{uuid.uuid4().hex[:8]}"
    as_writer, as_stream = (writer.username, writer.secret()), (stream.username, stream.secret())
    created = requests.post(f"{base}/api/2.0/mlflow/registered-models/create", json={"name": name},
                            auth=as_writer, timeout=30)  # fmt: skip
    assert created.ok, created.text
    tag = {"name": name, "key": "monitor.test", "value": "x"}

    def stream_sets_a_tag() -> int:
        url = f"{base}/api/2.0/mlflow/registered-models/set-tag"
        return requests.post(url, json=tag, auth=as_stream, timeout=30).status_code

    try:
        provision_accounts(settings.model_copy(update={"mlflow_model_name": name, "monitor_auto_rollback": True}))
        assert stream_sets_a_tag() == 200
        provision_accounts(settings.model_copy(update={"mlflow_model_name": name, "monitor_auto_rollback": False}))
        assert stream_sets_a_tag() == 403
    finally:
        requests.delete(f"{base}/api/2.0/mlflow/registered-models/delete", json={"name": name},
                        auth=as_writer, timeout=30)  # fmt: skip


def _service_processes(settings: Settings, names: tuple[str, ...]) -> dict[str, list[psutil.Process]]:
    from klinestream.stack.process import live_process, read_pid_file
    from klinestream.stack.services import build_services

    found = {}
    for service in build_services(settings, list(names)):
        main = live_process(read_pid_file(service.pid_path))
        assert main is not None, f"{service.name} is not running from this home"
        found[service.name] = [main, *main.children(recursive=True)]
    return found


def test_no_service_process_holds_a_secret_and_their_password_files_are_private(
    stack: StackHandle, settings: Settings
) -> None:
    from klinestream.stack.services import MlflowService, is_secret_variable

    names = ("kafka", "cassandra", "mlflow")
    stack.require(*names)
    secrets = {s.get_secret_value() for f in type(settings).model_fields if f.endswith("password")
               if (s := getattr(settings, f)) is not None}  # fmt: skip
    for name, processes in _service_processes(settings, names).items():
        for proc in processes:
            try:
                environ = Path(f"/proc/{proc.pid}/environ").read_bytes().decode(errors="replace").split("\0")
            except (FileNotFoundError, ProcessLookupError):
                continue  # a short-lived child
            variables = dict(item.split("=", 1) for item in environ if "=" in item)
            own = MlflowService.OWN_SECRETS if name == "mlflow" else ()
            leaked = [k for k in variables if is_secret_variable(k) and k not in own]
            assert not leaked, f"{name} pid {proc.pid} inherited {leaked}"
            assert not secrets & set(variables.values()), f"{name} pid {proc.pid} holds a service password"
    assert settings.secrets_path.stat().st_mode & 0o777 == 0o600
    for path in (
        settings.stack_dir / "kafka/conf/server.properties",
        settings.stack_dir / "mlflow/conf/basic_auth.ini",
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_a_service_is_started_without_the_callers_binance_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from klinestream.stack.services import build_services

    monkeypatch.setenv("KLINESTREAM_BINANCE_API_KEY", "caller-key-not-for-services")
    monkeypatch.setenv("KLINESTREAM_BINANCE_API_SECRET", "caller-secret-not-for-services")
    monkeypatch.setenv("KLINESTREAM_KAFKA_STREAM_PASSWORD", "a-password-not-for-services")
    for service in build_services(settings):
        env = service.env()
        assert not [k for k in env if "BINANCE_API" in k or k.endswith("_PASSWORD")], service.name
        assert "caller-key-not-for-services" not in env.values()
