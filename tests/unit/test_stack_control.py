"""The ``up`` decision and its idempotence, with a fake service (no real process is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from klinestream.stack import control
from klinestream.stack.control import Action, decide
from klinestream.stack.services import Service, build_services
from models.errors import ServiceError
from models.settings import load_settings


@pytest.mark.parametrize(
    ("running", "healthy", "port_in_use", "expected"),
    [
        (True, True, True, Action.LEAVE),
        (True, False, True, Action.WAIT),
        (True, False, False, Action.WAIT),
        (False, False, False, Action.START),
        (False, False, True, Action.CONFLICT),
    ],
)
def test_up_decision(running: bool, healthy: bool, port_in_use: bool, expected: Action) -> None:
    assert decide(running, healthy, port_in_use) is expected


class _FakeService(Service):
    """A service whose health and ports are set by the test; command/prepare are never run for LEAVE."""

    name = "kafka"

    def __init__(self, healthy: bool) -> None:
        super().__init__(load_settings())
        self._healthy = healthy

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return 1

    def command(self) -> list[str]:
        raise AssertionError("a healthy running service must not be started again")

    def healthy(self) -> bool:
        return self._healthy


def test_up_leaves_a_healthy_running_service_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    monkeypatch.setattr(control, "_ours", lambda service: psutil.Process())
    results = control.up([_FakeService(healthy=True)], report=lambda _: None)
    assert [(r.name, r.action) for r in results] == [("kafka", Action.LEAVE)]


def test_up_refuses_a_port_held_by_a_process_that_is_not_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "_ours", lambda service: None)
    monkeypatch.setattr(control, "_foreign_holder", lambda service: "pid 42 (java) holds port 1")
    with pytest.raises(control.StackStartError, match=r"pid 42 \(java\) holds port 1, which klinestream did not start"):
        control.up([_FakeService(healthy=False)], report=lambda _: None)


def test_services_are_built_in_start_order_and_ports_come_from_the_settings() -> None:
    settings = load_settings(
        kafka_bootstrap_servers="127.0.0.1:19092",
        cassandra_port=19042,
        mlflow_tracking_uri="http://127.0.0.1:15000",
        airflow_api_url="http://127.0.0.1:18080",
    )
    services = build_services(settings)
    assert [s.name for s in services] == ["kafka", "cassandra", "mlflow", "airflow"]
    assert [s.port for s in services] == [19092, 19042, 15000, 18080]
    assert services[0].extra_ports == (19093,)  # the KRaft controller
    assert services[3].env()["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert all(s.root == settings.home / "stack" / s.name for s in services)


def test_an_unknown_service_name_is_refused_with_the_choices() -> None:
    with pytest.raises(ServiceError, match="choose from"):
        build_services(load_settings(), ["zookeeper"])


def test_service_environment_drops_the_callers_airflow_and_mlflow_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite:////tmp/other.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    airflow = build_services(load_settings(), ["airflow"])[0]
    env = airflow.env()
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/stack/airflow/data/airflow.db?timeout=60")
    assert "MLFLOW_TRACKING_URI" not in env


def test_services_get_the_absolute_home_so_dag_tasks_share_the_cli_lake(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KLINESTREAM_HOME", "var")  # relative, as in .env.example
    monkeypatch.setenv("KLINESTREAM_DATA_DIR", "klines")
    airflow = build_services(load_settings(), ["airflow"])[0]
    env = airflow.env()
    assert env["KLINESTREAM_HOME"] == str(tmp_path / "var")
    assert env["KLINESTREAM_DATA_DIR"] == str(tmp_path / "klines")
    assert "KLINESTREAM_LAKE_DIR" not in env
