"""``klinestream train --register`` and ``klinestream models [--json]`` against the real MLflow server of the stack.

One tiny training (64 environment steps on synthetic klines written as files) runs the real console script
with a throw-away registered-model name; the run it logs, the version it registers and what the project's
safe loader (adapters/mlflow/registry.py ``load_version``) rebuilds from that version are checked against
the policy the command saved. The run and the registered model are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from models.settings import Settings
from models.time_range import parse_range
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("klinestream"))
TRAIN, TEST = "2021-01-03:2021-01-12", "2021-01-12:2021-01-18"


@dataclass
class Trained:
    env: dict[str, str]
    settings: Settings
    out: Path
    klines_dir: Path
    stdout: str


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"klinestream {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def trained(stack: StackHandle, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    from adapters.mlflow.registry import registry_client
    from klinestream.demo.data import write_synthetic

    stack.require("mlflow")
    home = tmp_path_factory.mktemp("train-register")
    ours = settings.model_copy(
        update={"home": home, "mlflow_model_name": f"klinestream-train-test-{uuid.uuid4().hex[:10]}"}
    )
    window = parse_range("2021-01-01:2021-01-20")
    klines_dir = write_synthetic(home / "klines", ours, window.start_ms, window.end_ms)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINESTREAM_")}
    env.update({"KLINESTREAM_HOME": str(home), "KLINESTREAM_MLFLOW_TRACKING_URI": ours.mlflow_tracking_uri,
                "KLINESTREAM_MLFLOW_MODEL_NAME": ours.mlflow_model_name, "KLINESTREAM_DEVICE": "cpu"})  # fmt: skip
    out = home / "out"
    done = cli(env, "train", "--variant", "lstm", "--train", TRAIN, "--test", TEST, "--seed", "3", "--steps", "64",
               "--data-dir", str(klines_dir), "--out", str(out), "--register")  # fmt: skip
    client = registry_client(ours.mlflow_tracking_uri)
    try:
        yield Trained(env, ours, out, klines_dir, done.stdout)
    finally:
        for version in client.search_model_versions(f"name='{ours.mlflow_model_name}'"):
            if version.run_id:
                client.delete_run(version.run_id)
        client.delete_registered_model(ours.mlflow_model_name)


def test_train_register_logs_a_run_and_registers_a_challenger_with_the_dags_tags(trained: Trained) -> None:
    from adapters.mlflow.registry import CHALLENGER, alias_version, registry_client
    from adapters.mlflow.tracking import TRAINING_EXPERIMENT

    uri, name = trained.settings.mlflow_tracking_uri, trained.settings.mlflow_model_name
    version = alias_version(uri, name, CHALLENGER)
    assert version == 1 and f"registered {name} version 1 (alias challenger)" in trained.stdout
    client = registry_client(uri)
    tags = client.get_model_version(name, "1").tags
    expected = {"variant": "lstm", "seed": "3", "train_range": TRAIN, "test_range": TEST,
                "trained_by": "klinestream train"}  # fmt: skip
    assert {key: tags[key] for key in expected} == expected

    run = client.get_run(tags["run_id"])
    assert re.search(rf"MLflow run {run.info.run_id}: {uri}/#/experiments/\d+/runs/{run.info.run_id}", trained.stdout)
    assert client.get_experiment(run.info.experiment_id).name == TRAINING_EXPERIMENT
    assert (run.data.tags["variant"], run.data.tags["seed"], run.data.tags["test_range"]) == ("lstm", "3", TEST)
    assert run.data.tags["git_commit"] and run.data.tags["trained_by"] == "klinestream train"
    params, metrics = run.data.params, run.data.metrics
    assert params["agent.variant"] == "lstm" and params["train.total_env_steps"] == "64"
    assert (
        params["data.train_range"] == TRAIN and params["data.test_range"] == TEST and "feature.spec_version" in params
    )
    saved = json.loads((trained.out / "metrics.json").read_text())
    assert metrics["train.env_steps"] == saved["env_steps"] and metrics["train.updates"] == saved["updates"]
    assert metrics["agent.portfolio_fees.sharpe"] == pytest.approx(saved["agent"]["portfolio_fees"]["sharpe"])
    assert metrics["buy_and_hold.unit.final_profit"] == pytest.approx(saved["buy_and_hold"]["unit"]["final_profit"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts and all(path.endswith(".png") for path in artifacts)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "configs")} >= {"configs/agent.json"}


def test_the_registered_pyfunc_loaded_safely_gives_the_saved_policys_q_values(trained: Trained) -> None:
    from adapters.kline_files import read_kline_folder
    from adapters.mlflow.pyfunc import input_example
    from adapters.mlflow.registry import load_version
    from models.kline import HOUR_MS
    from models.policy import Policy

    loaded = load_version(trained.settings.mlflow_tracking_uri, trained.settings.mlflow_model_name, 1)
    saved = Policy.load(trained.out / "policy", device="cpu")
    assert (loaded.version, loaded.variant) == (1, "lstm") and loaded.policy.spec == saved.spec
    klines = read_kline_folder(trained.klines_dir, trained.settings.symbols)
    test = parse_range(TEST)
    for end in range(test.start_ms, test.end_ms, 13 * HOUR_MS):
        window = input_example(klines[klines["open_time"] <= end], saved).assign(interval="1h")
        expected = saved.q_values(window)
        assert np.isfinite(expected).all()
        np.testing.assert_array_equal(loaded.policy.q_values(window), expected)


def test_models_json_carries_the_figures_of_the_text(trained: Trained) -> None:
    text = cli(trained.env, "models").stdout
    report = json.loads(cli(trained.env, "models", "--json").stdout)
    assert report["model"] == trained.settings.mlflow_model_name and len(report["versions"]) == 1
    row = report["versions"][0]
    assert (row["version"], row["variant"], row["aliases"], row["seed"]) == (1, "lstm", ["challenger"], "3")
    assert (row["train_range"], row["test_range"]) == (TRAIN, TEST) and row["gate_decision"] is None
    line = text.strip().splitlines()[0]
    for shown in (f"v{row['version']}", row["variant"], ",".join(row["aliases"]), f"seed: {row['seed']}",
                  f"train: {row['train_range']}", f"test: {row['test_range']}", "gate: -"):  # fmt: skip
        assert shown in line, f"{shown!r} not in {line!r}"
