"""The dqn_walkforward DAG run by Airflow's own ``dag.test()`` against the real MLflow server of the stack.

Synthetic klines go into a temporary validated lake through the lake API; a tiny configuration (two
monthly folds, both variants, two seeds, a few hundred env steps) runs every task; the test then reads
the outcome through MLflow's REST API, as the MLflow UI does: one parent run with the stitched figures
and the report, one nested run per fold with its metrics and plot, and no registered model version.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters import lake
from klinestream.airflow_dags import load_dag
from models.kline import HOUR_MS
from models.settings import DEFAULT_SYMBOLS, Settings
from models.synthetic import random_walk_klines
from models.time_range import parse_time
from tests.integration.conftest import StackHandle
from tests.registry_helpers import mlflow_login

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = {
    "test_range": "2022-02-01:2022-04-01",
    "train_months": 1,
    "variants": ["linear", "lstm"],
    "seeds": [0, 1],
    "steps": 300,
    "n_envs": 4,
    "episode_hours": 48,
    "bootstrap": 200,
    "extra_trials": 6,
}


def _api(uri: str, endpoint: str, body: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    url = f"{uri}/api/2.0/mlflow/{endpoint}"
    login = mlflow_login()
    response = (requests.post(url, json=body, auth=login, timeout=10) if body
                else requests.get(url, params=params, auth=login, timeout=10))  # fmt: skip
    response.raise_for_status()
    return dict(response.json())


def _runs(uri: str, experiment_id: str, filter_string: str) -> list[dict[str, Any]]:
    body = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 100}
    return list(_api(uri, "runs/search", body).get("runs", []))


def test_dag_test_logs_a_parent_run_and_one_nested_run_per_fold_and_registers_nothing(
    airflow_home: Path, stack: StackHandle, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.require("mlflow")
    uri, name = settings.mlflow_tracking_uri, f"klinestream-walkforward-test-{uuid.uuid4().hex[:8]}"
    klines = random_walk_klines(DEFAULT_SYMBOLS, parse_time("2021-12-15"), 24 * 110, seed=31, drift=0.0005)
    start, end = int(klines["open_time"].min()), int(klines["open_time"].max()) + HOUR_MS
    lake.write_range(tmp_path / "lake", "validated", klines, start, end)
    for variable, value in {
        "HOME": tmp_path / "home",
        "LAKE_DIR": tmp_path / "lake",
        "MLFLOW_MODEL_NAME": name,
        "MLFLOW_TRACKING_URI": uri,
        "DEVICE": "cpu",
    }.items():
        monkeypatch.setenv(f"KLINESTREAM_{variable}", str(value))
    monkeypatch.delenv("KLINESTREAM_DATA_DIR", raising=False)

    dag_run = load_dag("dqn_walkforward").test(run_conf=TINY)

    assert dag_run.state == "success"
    experiment = _api(uri, "experiments/get-by-name", experiment_name="klinestream-walkforward")["experiment"]
    parents = _runs(uri, experiment["experiment_id"], f"tags.dag_run_id = '{dag_run.run_id}'")
    assert len(parents) == 1
    parent = parents[0]
    metrics = {m["key"]: m["value"] for m in parent["data"]["metrics"]}
    assert metrics["n_trials"] == 2 * 2 + 6
    assert {
        "buy_and_hold.sharpe",
        "trend.total_return",
        "cash.total_return",
        "linear/seed0.dsr",
        "lstm/seed1.sharpe_ci_low",
        "linear.mean.total_return",
        "lstm.beats.buy_and_hold",
    } <= set(metrics)
    assert metrics["cash.total_return"] == 0.0
    report = {
        Path(f["path"]).name
        for f in _api(uri, "artifacts/list", run_id=parent["info"]["run_id"], path="report")["files"]
    }
    assert {"report.md", "equity.png", "monthly.png", "fees.png"} <= report

    parent_id = parent["info"]["run_id"]
    nested = _runs(uri, experiment["experiment_id"], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r["info"]["run_name"] for r in nested) == ["fold00-2022-02", "fold01-2022-03"]
    for run in nested:
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        fold_metrics = {m["key"] for m in run["data"]["metrics"]}
        assert params["fold.test_range"].startswith(run["info"]["run_name"][7:14])
        assert {"buy_and_hold.total_return", "linear/seed1.sharpe", "lstm/seed0.n_trades"} <= fold_metrics
        plots = _api(uri, "artifacts/list", run_id=run["info"]["run_id"], path="plots")["files"]
        assert [Path(f["path"]).name for f in plots] == [f"{run['info']['run_name']}.png"]

    # it registers nothing: no model under the run's name, no version made from any of its runs
    missing = requests.get(f"{uri}/api/2.0/mlflow/registered-models/get", params={"name": name},
                           auth=mlflow_login(), timeout=10)  # fmt: skip
    assert missing.status_code == 404
    for run_id in [parent_id, *(r["info"]["run_id"] for r in nested)]:
        assert not _api(uri, "model-versions/search", filter=f"run_id='{run_id}'").get("model_versions")
    work = tmp_path / "home" / "walkforward"
    assert [p.name for p in work.glob("*/report/report.md")] == ["report.md"]
