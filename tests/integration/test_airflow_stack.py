"""The stack's ``airflow standalone``: every component heartbeats and the admin login it prints works."""

from __future__ import annotations

import json

import pytest
import requests

from klinestream.stack.services import AirflowService
from models.settings import Settings
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration


def test_standalone_components_are_healthy_and_the_generated_admin_password_logs_in(
    stack: StackHandle, settings: Settings
) -> None:
    stack.require("airflow")
    api = settings.airflow_api_url.rstrip("/")

    health = requests.get(f"{api}/api/v2/monitor/health", timeout=10).json()
    assert {part: health[part]["status"] for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }

    password = json.loads(AirflowService(settings).password_file.read_text())["admin"]
    token = requests.post(f"{api}/auth/token", json={"username": "admin", "password": password}, timeout=10)
    assert token.status_code == 201
    dags = requests.get(
        f"{api}/api/v2/dags", headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=10
    )
    assert dags.status_code == 200
    assert "total_entries" in dags.json()

    refused = requests.post(f"{api}/auth/token", json={"username": "admin", "password": password + "x"}, timeout=10)
    assert refused.status_code in (401, 403)
