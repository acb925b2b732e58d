"""``klinestream tune`` against the real MLflow server: a small study on synthetic klines logs one parent run
and one nested run per trial (params, fold metrics, objective), resumes from its storage under the same parent
run, and writes the defaults with its provenance only when asked (--write-defaults)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from models.settings import Settings
from models.synthetic import random_walk_klines
from models.time_range import parse_range
from pipelines.defaults import load_defaults
from tests.integration.conftest import StackHandle
from tests.registry_helpers import mlflow_login
from tests.tune_space import SYMBOLS
from tests.tune_space import TINY_SPACE as SPACE

pytestmark = pytest.mark.integration


def _search(uri: str, experiment_id: str, filter_string: str) -> list[dict[str, Any]]:
    body = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 100}
    response = requests.post(f"{uri}/api/2.0/mlflow/runs/search", json=body, auth=mlflow_login(), timeout=10)
    response.raise_for_status()
    return list(response.json().get("runs", []))


def _tune(tmp_path: Path, settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KLINESTREAM_HOME": str(tmp_path / "home"), "KLINESTREAM_DATA_DIR": str(tmp_path / "data"),
           "KLINESTREAM_SYMBOLS": ",".join(SYMBOLS), "KLINESTREAM_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}  # fmt: skip
    command = [sys.executable, "-m", "klinestream.cli", "tune", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_tune_logs_nested_runs_resumes_and_writes_defaults_only_when_asked(
    stack: StackHandle, settings: Settings, tmp_path: Path
) -> None:
    stack.require("mlflow")
    uri, experiment = settings.mlflow_tracking_uri, f"klinestream-tune-test-{uuid.uuid4().hex[:8]}"
    (tmp_path / "data").mkdir()
    start = parse_range("2020-12-01:2021-01-01").start_ms
    klines = random_walk_klines(SYMBOLS, start, 24 * 130, seed=11)
    for symbol, frame in klines.groupby("symbol"):
        frame.drop(columns=["symbol", "interval"]).to_csv(tmp_path / "data" / f"{symbol}.csv", index=False)
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    defaults = tmp_path / "defaults.json"
    common = ("--study-name", "it", "--experiment", experiment, "--workers", "1", "--defaults-file", str(defaults))
    study = ("--space", str(tmp_path / "space.json"), "--range", "2021-01-01:2021-04-01", "--folds", "2",
             "--train-months", "1", "--steps", "192")  # fmt: skip
    first = _tune(tmp_path, settings, *common, "--trials", "1", *study)
    assert first.returncode == 0, first.stderr[-2000:]
    assert not defaults.exists()  # nothing written unless asked
    second = _tune(tmp_path, settings, *common, "--trials", "2", "--write-defaults")
    assert second.returncode == 0, second.stderr[-2000:]

    found = requests.get(f"{uri}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment},
                         auth=mlflow_login(), timeout=10)  # fmt: skip
    experiment_id = found.json()["experiment"]["experiment_id"]
    parents = _search(uri, experiment_id, "tags.kind = 'tune-study'")
    assert len(parents) == 1  # the resumed study reopened its parent run
    parent = parents[0]
    parent_id = parent["info"]["run_id"]
    metrics = {m["key"]: m["value"] for m in parent["data"].get("metrics", [])}
    assert metrics["n_trials"] == 2 and "best.objective" in metrics
    params = {p["key"]: p["value"] for p in parent["data"]["params"]}
    assert params["tune.tune_range"] == "2021-01-01:2021-04-01" and params["tune.folds"] == "2"
    nested = _search(uri, experiment_id, f"tags.mlflow.parentRunId = '{parent_id}'")
    trials = sorted({t["key"]: t["value"] for t in run["data"]["tags"]}["trial"] for run in nested)
    assert trials == ["0", "1"]
    for run in nested:
        run_params = {p["key"]: p["value"] for p in run["data"]["params"]}
        run_metrics = {m["key"] for m in run["data"]["metrics"]}
        assert run_params["env.reward"] == "log_return" and "search.agent.learning_rate" in run_params
        assert {"objective", "fold.sharpe", "fold.score", "fold.n_trades", "objective.running"} <= run_metrics
        assert run["info"]["status"] == "FINISHED"

    written = load_defaults(defaults).for_variant("linear")
    assert written.provenance["study"] == "it" and written.provenance["tune_range"] == "2021-01-01:2021-04-01"
    assert written.provenance["mlflow_parent_run_id"] == parent_id and written.params["env.reward"] == "log_return"
