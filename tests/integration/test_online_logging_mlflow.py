"""Online weights logged to the real MLflow server: a run tagged ``online`` that names its parent version."""

from __future__ import annotations

import uuid

import pytest

from adapters.mlflow.tracking import MlflowOnlineLogger
from models.settings import Settings
from tests.integration.conftest import StackHandle
from tests.trader_fakes import make_policy, market

pytestmark = pytest.mark.integration


def test_online_weights_become_a_run_tagged_online_with_the_parent_version(
    stack: StackHandle, settings: Settings
) -> None:
    from mlflow import MlflowClient

    stack.require("mlflow")
    experiment = f"test-online-{uuid.uuid4().hex[:8]}"
    policy = make_policy(market(80))
    logger = MlflowOnlineLogger(settings.mlflow_tracking_uri, "klinestream-dqn-test", experiment=experiment)
    logger.log_online("4", policy, {"equity": 101_000.0, "online_updates": 48.0}, step=48)

    client = MlflowClient(settings.mlflow_tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], "tags.online = 'true' and tags.parent_version = '4'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.metrics["equity"] == 101_000.0 and run.data.tags["registered_model"] == "klinestream-dqn-test"
    files = {f.path for f in client.list_artifacts(run.info.run_id, "policy")}
    assert {"policy/policy.json", "policy/normalizer.json", "policy/weights.pt"} <= files
