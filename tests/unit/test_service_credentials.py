"""Service credentials: generated once into a private file, read from settings, never handed to services."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from klinestream.stack import configs
from klinestream.stack.airflow_standalone import SKIP_FLAG, component_command
from klinestream.stack.secrets import ensure_secrets
from klinestream.stack.services import build_services, is_secret_variable
from models.credentials import PASSWORD_FIELDS, CassandraRole, Credentials, KafkaPrincipal, MlflowAccount
from models.errors import SettingsError
from models.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Isolate from the developer's environment and any .env; the home is a fresh folder."""
    for name in list(os.environ):
        if name.startswith("KLINESTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KLINESTREAM_HOME", str(tmp_path / "home"))


def test_without_passwords_no_service_is_authenticated() -> None:
    settings = load_settings()
    assert settings.kafka_credentials(KafkaPrincipal.STREAM) is None
    assert settings.cassandra_credentials(CassandraRole.STREAM) is None
    assert settings.mlflow_credentials(MlflowAccount.STREAM) is None


def test_stack_up_generates_every_password_once_into_a_private_file_read_by_load_settings() -> None:
    generated = ensure_secrets(load_settings())
    path = generated.secrets_path
    assert path.stat().st_mode & 0o777 == 0o600
    assert all(getattr(generated, field) is not None for field in PASSWORD_FIELDS)
    first = path.read_text()
    assert ensure_secrets(load_settings()).secrets_path.read_text() == first, "a second run regenerates nothing"
    loaded = load_settings()
    stream = loaded.kafka_credentials(KafkaPrincipal.STREAM)
    assert stream is not None and stream.username == "klinestream_stream"
    assert stream.secret() == generated.kafka_stream_password.get_secret_value()  # type: ignore[union-attr]
    assert stream.secret() not in repr(loaded) and stream.secret() not in repr(stream)


def test_a_password_already_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINESTREAM_CASSANDRA_ADMIN_PASSWORD", "chosen-by-a-person-1234")
    ensure_secrets(load_settings())
    assert "CASSANDRA_ADMIN_PASSWORD" not in load_settings().secrets_path.read_text()
    admin = load_settings().cassandra_credentials(CassandraRole.ADMIN)
    assert admin is not None and admin.secret() == "chosen-by-a-person-1234"


def test_a_secrets_file_others_can_read_is_refused() -> None:
    path = ensure_secrets(load_settings()).secrets_path
    path.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        load_settings()


def test_one_missing_password_of_a_locked_service_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINESTREAM_KAFKA_ADMIN_PASSWORD", "an-admin-password-123")
    with pytest.raises(SettingsError, match="KLINESTREAM_KAFKA_STREAM_PASSWORD"):
        load_settings().kafka_credentials(KafkaPrincipal.STREAM)


def test_a_password_that_cannot_be_quoted_safely_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINESTREAM_KAFKA_ADMIN_PASSWORD", 'quote"in-the-middle-1234')
    with pytest.raises(SettingsError, match="KLINESTREAM_KAFKA_ADMIN_PASSWORD") as refused:
        load_settings()
    assert "quote" not in str(refused.value)


def test_the_broker_is_locked_and_never_creates_topics_on_demand(tmp_path: Path) -> None:
    admin = Credentials("klinestream_admin", SecretStr("a-long-admin-pass-1"))
    props = configs.kafka_server_properties("127.0.0.1", 19092, 19093, tmp_path, admin)
    lines = dict(line.split("=", 1) for line in props.splitlines() if "=" in line and not line.startswith("#"))
    assert lines["auto.create.topics.enable"] == "false"
    assert lines["allow.everyone.if.no.acl.found"] == "false"
    assert lines["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert lines["super.users"] == "User:klinestream_admin"
    assert "PLAINTEXT://" not in lines["listeners"].replace("SASL_PLAINTEXT://", "")


def test_services_get_no_secret_of_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINESTREAM_BINANCE_API_KEY", "the-callers-key")
    monkeypatch.setenv("KLINESTREAM_BINANCE_API_SECRET", "the-callers-secret")
    monkeypatch.setenv("KLINESTREAM_KLINE_SIGNING_KEY", "k" * 40)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud")
    settings = ensure_secrets(load_settings())
    for service in build_services(settings):
        env = service.env()
        assert not {"the-callers-key", "the-callers-secret", "k" * 40, "cloud"} & set(env.values()), service.name
        assert "KLINESTREAM_HOME" in env
    assert is_secret_variable("KLINESTREAM_MLFLOW_WRITER_PASSWORD") and not is_secret_variable("PATH")
    assert not is_secret_variable("MLFLOW_SERVER_SECRETS_CACHE_TTL")


def test_the_live_processes_keep_the_callers_klinestream_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervised ingestor, dashboard and bot are what use the signing key, the password and the token."""
    from klinestream.stack.services import LiveService

    monkeypatch.setenv("KLINESTREAM_KLINE_SIGNING_KEY", "k" * 40)
    monkeypatch.setenv("KLINESTREAM_TELEGRAM_BOT_TOKEN", "123:token")
    monkeypatch.setenv("KLINESTREAM_TELEGRAM_CHAT_IDS", "42")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud")
    env = LiveService(ensure_secrets(load_settings())).env()
    assert env["KLINESTREAM_KLINE_SIGNING_KEY"] == "k" * 40 and env["KLINESTREAM_TELEGRAM_BOT_TOKEN"] == "123:token"
    assert "AWS_SECRET_ACCESS_KEY" not in env


def test_airflow_scheduler_and_triggerer_start_without_their_log_servers() -> None:
    assert component_command(["scheduler"]) == ["scheduler", SKIP_FLAG]
    assert component_command(["triggerer"]) == ["triggerer", SKIP_FLAG]
    assert component_command(["api-server"]) == ["api-server"]
