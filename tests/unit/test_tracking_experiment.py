"""``use_experiment`` makes the experiment the active one even when another process created it first.

MLflow's ``set_experiment`` returns without activating the experiment when its create answers
RESOURCE_ALREADY_EXISTS (another process created it between the lookup and the create: the two parallel
train tasks of a first dqn_retrain run on a fresh server). Runs then went to "Default", and the evaluate
task failed to resume them. The race is replayed here on a local SQLite store: the create succeeds, then
reports RESOURCE_ALREADY_EXISTS, as the losing process sees it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS
from mlflow.tracking import fluent
from mlflow.tracking._tracking_service.client import TrackingServiceClient

from adapters.mlflow.tracking import use_experiment


@pytest.fixture
def lost_the_create_race(monkeypatch: pytest.MonkeyPatch) -> None:
    real_create = TrackingServiceClient.create_experiment

    def create_then_already_exists(self: TrackingServiceClient, name: str, *args: Any, **kwargs: Any) -> str:
        real_create(self, name, *args, **kwargs)  # the other process's create
        raise MlflowException(f"Experiment '{name}' already exists.", error_code=RESOURCE_ALREADY_EXISTS)

    monkeypatch.setattr(TrackingServiceClient, "create_experiment", create_then_already_exists)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)


@pytest.mark.slow
def test_runs_go_to_the_experiment_when_another_process_created_it_first(
    tmp_path: Path, lost_the_create_race: None
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = use_experiment(uri, "race-experiment")
    with mlflow.start_run() as run:
        pass
    assert experiment_id == mlflow.get_experiment_by_name("race-experiment").experiment_id
    assert run.info.experiment_id == experiment_id != "0"
