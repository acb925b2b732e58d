"""The dqn_retrain DAG run by Airflow's own ``dag.test()`` against the real MLflow server of the stack.

Synthetic klines go into a temporary validated lake through the lake API; a tiny configuration trains
both variants; the test then reads the outcome the way the MLflow UI does, through MLflow's REST API:
one new version per variant (tagged with its variant), a champion chosen by the gate, a gate decision
on every version, and runs carrying params, metrics and plots.
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
from models.settings import Settings
from tests.integration.conftest import StackHandle
from tests.registry_helpers import TEST_RANGE, TRAIN_RANGE, registry_klines

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = {
    "train_range": TRAIN_RANGE,
    "test_range": TEST_RANGE,
    "variants": ["linear", "lstm"],
    "seeds": [0],
    "episodes": 1,
    "episode_hours": 48,
    "n_envs": 4,
    "promote": True,
    "gate_min_trades": 0,
    "gate_max_drawdown": 1.0,
}


def _get(uri: str, endpoint: str, **params: Any) -> dict[str, Any]:
    response = requests.get(f"{uri}/api/2.0/mlflow/{endpoint}", params=params, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def test_dag_test_registers_one_version_per_variant_and_applies_the_gate(
    airflow_home: Path, stack: StackHandle, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.require("mlflow")
    uri, name = settings.mlflow_tracking_uri, f"klinestream-dag-test-{uuid.uuid4().hex[:8]}"
    klines = registry_klines(seed=21)
    start, end = int(klines["open_time"].min()), int(klines["open_time"].max()) + HOUR_MS
    lake.write_range(tmp_path / "lake", "validated", klines, start, end)
    lake.write_range(tmp_path / "lake", "raw", klines.assign(close=klines["close"] * 2), start, end)  # never read
    for variable, value in {"HOME": tmp_path / "home", "LAKE_DIR": tmp_path / "lake", "MLFLOW_MODEL_NAME": name,
                            "MLFLOW_TRACKING_URI": uri, "DEVICE": "cpu"}.items():  # fmt: skip
        monkeypatch.setenv(f"KLINESTREAM_{variable}", str(value))
    monkeypatch.delenv("KLINESTREAM_DATA_DIR", raising=False)

    dag_run = load_dag("dqn_retrain").test(run_conf=TINY)

    assert dag_run.state == "success"
    model = _get(uri, "registered-models/get", name=name)["registered_model"]
    versions = _get(uri, "model-versions/search", filter=f"name='{name}'")["model_versions"]
    tags = {int(v["version"]): {t["key"]: t["value"] for t in v.get("tags", [])} for v in versions}
    assert sorted(t["variant"] for t in tags.values()) == ["linear", "lstm"]
    assert all(t["dag_run_id"] == dag_run.run_id and t["test_range"] == TEST_RANGE for t in tags.values())
    assert all(
        t["gate.decision"] in ("promoted", "rejected") and t["gate.holdout"] == TEST_RANGE for t in tags.values()
    )
    aliases = {a["alias"]: int(a["version"]) for a in model.get("aliases", [])}
    assert aliases["challenger"] == max(tags)
    # the first version meets loose absolute bounds with no champion: it is promoted; the second is judged
    # against it and either replaced it (then the first is "previous") or was rejected
    assert tags[min(tags)]["gate.decision"] == "promoted"
    if tags[max(tags)]["gate.decision"] == "promoted":
        assert (aliases["champion"], aliases["previous"]) == (max(tags), min(tags))
    else:
        assert aliases["champion"] == min(tags) and "previous" not in aliases

    for version in tags.values():
        run = _get(uri, "runs/get", run_id=version["run_id"])["run"]
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        metrics = {m["key"] for m in run["data"]["metrics"]}
        run_tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert (
            params["feature.spec_version"] and params["agent.gamma"] == "0.95" and params["env.episode_hours"] == "48"
        )
        assert {"agent.portfolio_fees.sharpe", "buy_and_hold.portfolio_fees.sharpe", "agent.unit.final_profit",
                "train.loss"} <= metrics  # fmt: skip
        assert run_tags["variant"] == version["variant"] and run_tags["git_commit"] and run_tags["seed"] == "0"
        plots = _get(uri, "artifacts/list", run_id=version["run_id"], path="plots")["files"]
        assert {"trades.png", "equity.png"} <= {Path(f["path"]).name for f in plots}
