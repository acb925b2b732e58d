"""The dqn_retrain DAG run by Airflow's own ``dag.test()`` against the real MLflow server of the stack.

Synthetic klines go into a temporary validated lake through the lake API; a tiny configuration trains
both variants with **no pinned ranges** (rolling windows); the test then reads the outcome the way the
MLflow UI does, through MLflow's REST API: one new version per variant (tagged with its variant), the
ranges planned from the lake and the run (params), a gate decision against the cash baseline on every
version, and runs carrying params, metrics and plots. With more klines in the lake, the next run's ranges
move forward; the RETRAINED asset events the gate published tell the trigger rule when a klines-triggered
run may retrain.
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
from models.settings import Settings, load_settings
from pipelines.retrain import ASSET_TRIGGERED, DAY_MS, due_from_events
from pipelines.retrain_config import config_from_params
from pipelines.walkforward.folds import iso, min_embargo_hours
from tests.integration.conftest import StackHandle
from tests.registry_helpers import mlflow_login, registry_klines

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Rolling windows, small: the last 7 days of the lake are the holdout, one month before the embargo trains.
TINY = {
    "holdout_days": 7,
    "train_months": 1,
    "variants": ["linear", "lstm"],
    "seeds": [0],
    "episodes": 1,
    "episode_hours": 48,
    "n_envs": 4,
    "promote": True,
    "gate_min_trades": 0,
    "gate_max_drawdown": 1.0,
}


DAYS, MORE_DAYS = 50, 9


def _get(uri: str, endpoint: str, **params: Any) -> dict[str, Any]:
    response = requests.get(f"{uri}/api/2.0/mlflow/{endpoint}", params=params, auth=mlflow_login(), timeout=10)
    response.raise_for_status()
    return dict(response.json())


def _versions(uri: str, name: str) -> dict[int, dict[str, str]]:
    versions = _get(uri, "model-versions/search", filter=f"name='{name}'")["model_versions"]
    return {int(v["version"]): {t["key"]: t["value"] for t in v.get("tags", [])} for v in versions}


def _params(uri: str, run_id: str) -> dict[str, str]:
    run = _get(uri, "runs/get", run_id=run_id)["run"]
    return {p["key"]: p["value"] for p in run["data"]["params"]}


def _retrained_extras(dag: Any, model: str) -> list[dict[str, Any]]:
    """The events of the asset the gate task publishes (RETRAINED) in Airflow's metadata database for the
    registered model ``model`` (other tests share the database), oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    (retrained,) = dag.get_task("gate").outlets
    with create_session() as session:
        query = select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        events = session.scalars(query.where(AssetModel.uri == retrained.uri).order_by(AssetEvent.timestamp)).all()
        return [dict(e.extra) for e in events if (e.extra or {}).get("model") == model]


def _check_gate(tags: dict[int, dict[str, str]]) -> None:
    """Every decision was taken against the cash baseline after fees, and a promotion beat it."""
    for t in tags.values():
        assert t["gate.decision"] in ("promoted", "rejected") and t["gate.baseline"] == "cash"
        assert float(t["gate.baseline.total_return"]) == 0.0 and t["gate.holdout"] == t["test_range"]
        beats_cash = float(t["gate.challenger.total_return"]) > 0 and float(t["gate.challenger.sharpe"]) > 0
        assert beats_cash or (t["gate.decision"] == "rejected" and "does not beat cash" in t["gate.reason"])
        if t["gate.decision"] == "promoted":
            assert beats_cash and "beat cash" in t["gate.reason"]


def test_dag_test_retrains_on_rolling_windows_and_gates_against_cash(
    airflow_home: Path, stack: StackHandle, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.require("mlflow")
    uri, name = settings.mlflow_tracking_uri, f"klinestream-dag-test-{uuid.uuid4().hex[:8]}"
    klines = registry_klines(hours=24 * (DAYS + MORE_DAYS), seed=21)
    start = int(klines["open_time"].min())
    t1, t2 = start + DAYS * DAY_MS, start + (DAYS + MORE_DAYS) * DAY_MS
    first = klines[klines["open_time"] < t1]
    lake.write_range(tmp_path / "lake", "validated", first, start, t1)
    lake.write_range(tmp_path / "lake", "raw", first.assign(close=first["close"] * 2), start, t1)  # never read
    for variable, value in {"HOME": tmp_path / "home", "LAKE_DIR": tmp_path / "lake", "MLFLOW_MODEL_NAME": name,
                            "MLFLOW_TRACKING_URI": uri, "DEVICE": "cpu"}.items():  # fmt: skip
        monkeypatch.setenv(f"KLINESTREAM_{variable}", str(value))
    monkeypatch.delenv("KLINESTREAM_DATA_DIR", raising=False)
    dag = load_dag("dqn_retrain")

    dag_run = dag.test(run_conf=TINY)

    assert dag_run.state == "success"
    holdout = f"{iso(t1 - 7 * DAY_MS)}:{iso(t1)}"
    model = _get(uri, "registered-models/get", name=name)["registered_model"]
    tags = _versions(uri, name)
    assert sorted(t["variant"] for t in tags.values()) == ["linear", "lstm"]
    assert all(t["dag_run_id"] == dag_run.run_id and t["test_range"] == holdout for t in tags.values())
    _check_gate(tags)
    aliases = {a["alias"]: int(a["version"]) for a in model.get("aliases", [])}
    assert aliases["challenger"] == max(tags)
    promoted = [v for v, t in tags.items() if t["gate.decision"] == "promoted"]
    assert aliases.get("champion") == (max(promoted) if promoted else None)

    embargo = min_embargo_hours()
    for version in tags.values():
        params = _params(uri, version["run_id"])
        assert params["data.test_range"] == holdout and params["data.ranges_from"] == "run"
        assert params["data.train_range"].endswith(iso(t1 - 7 * DAY_MS - embargo * HOUR_MS))
        assert params["data.embargo_hours"] == str(embargo) and len(params["data.snapshot_sha256"]) == 64
        assert params["feature.spec_version"] and params["agent.gamma"] == "0.95"
        assert params["env.episode_hours"] == "48"
        run = _get(uri, "runs/get", run_id=version["run_id"])["run"]
        metrics = {m["key"] for m in run["data"]["metrics"]}
        run_tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert {"agent.portfolio_fees.sharpe", "buy_and_hold.portfolio_fees.sharpe", "agent.unit.final_profit",
                "train.loss"} <= metrics  # fmt: skip
        assert run_tags["variant"] == version["variant"] and run_tags["git_commit"] and run_tags["seed"] == "0"
        plots = _get(uri, "artifacts/list", run_id=version["run_id"], path="plots")["files"]
        assert {"trades.png", "equity.png"} <= {Path(f["path"]).name for f in plots}

    # the gate published RETRAINED with the holdout end: a klines-triggered run is not due until 7 new days
    extras = _retrained_extras(dag, name)
    assert [e["holdout_end_ms"] for e in extras] == [t1] and extras[0]["dag_run_id"] == dag_run.run_id
    config = config_from_params(dag.params.dump())
    assert not due_from_events(load_settings(), config, ASSET_TRIGGERED, extras)

    rest = klines[klines["open_time"] >= t1]
    lake.write_range(tmp_path / "lake", "validated", rest, t1, t2)
    assert due_from_events(load_settings(), config, ASSET_TRIGGERED, extras)

    second = dag.test(run_conf={**TINY, "variants": ["linear"]})

    assert second.state == "success"
    new = {v: t for v, t in _versions(uri, name).items() if v not in tags}
    assert len(new) == 1 and next(iter(new.values()))["test_range"] == f"{iso(t2 - 7 * DAY_MS)}:{iso(t2)}"
    _check_gate(new)
    params = _params(uri, next(iter(new.values()))["run_id"])
    assert params["data.snapshot_sha256"] != _params(uri, tags[min(tags)]["run_id"])["data.snapshot_sha256"]
    assert [e["holdout_end_ms"] for e in _retrained_extras(dag, name)] == [t1, t2]
    if promoted:  # the champion was judged again on the newest holdout and flagged (or not) against cash
        champion_tags = _versions(uri, name)[max(promoted)]
        assert champion_tags["gate.below_baseline.holdout"] == f"{iso(t2 - 7 * DAY_MS)}:{iso(t2)}"
