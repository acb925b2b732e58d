"""MLflow round trip: a run with params and metrics, a pyfunc registered, aliased, loaded back by alias."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from models.settings import Settings
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration


class _AddOffset:
    """Factory of a tiny pyfunc: adds a fixed offset to column ``x`` (defined lazily: mlflow imports are heavy)."""

    @staticmethod
    def build(offset: float) -> Any:
        from mlflow.pyfunc import PythonModel

        class AddOffset(PythonModel):
            def __init__(self, offset: float) -> None:
                self.offset = offset

            def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.Series:
                return model_input["x"] + self.offset

        return AddOffset(offset)


@pytest.fixture
def tracking(stack: StackHandle, settings: Settings) -> Iterator[Any]:
    import mlflow

    stack.require("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(previous)


def test_run_is_logged_and_the_model_registered_under_an_alias_loads_back_and_predicts(tracking: Any) -> None:
    mlflow = tracking
    from mlflow import MlflowClient

    name = f"test-model-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(f"tests-{name}")
    example = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with mlflow.start_run() as run:
        mlflow.log_params({"gamma": 0.95, "variant": "linear"})
        for step, loss in enumerate([0.9, 0.5, 0.2]):
            mlflow.log_metric("loss", loss, step=step)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_AddOffset.build(10.0),
            input_example=example,
            pip_requirements=["mlflow", "pandas"],
            registered_model_name=name,
        )

    client = MlflowClient()
    try:
        stored = client.get_run(run.info.run_id).data
        assert stored.params == {"gamma": "0.95", "variant": "linear"}
        assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [0.9, 0.5, 0.2]
        assert str(info.registered_model_version) == "1"
        client.set_registered_model_alias(name, "champion", "1")
        assert client.get_model_version_by_alias(name, "champion").version == "1"

        loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        assert list(loaded.predict(example)) == [11.0, 12.0, 13.0]
    finally:
        client.delete_registered_model(name)
