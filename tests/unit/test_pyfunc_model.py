"""The pyfunc model (adapters/mlflow/pyfunc.py), saved and loaded locally (no tracking server): it rebuilds the
policy from its artifacts and decides exactly like the in-memory policy on the same klines, also in a fresh
process that has only the model's bundled code (not the repository) to import it from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from adapters.mlflow.pyfunc import (
    OUTPUT_COLUMNS,
    POLICY_ARTIFACT,
    KlinePolicyModel,
    bundled_code,
    input_example,
    model_signature,
)
from models.errors import PermanentError
from tests.registry_helpers import random_policy, registry_klines


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    return registry_klines(hours=24 * 16)


@pytest.fixture(scope="module")
def saved(klines: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    policy = random_policy(klines, "lstm", seed=3)
    root = tmp_path_factory.mktemp("pyfunc")
    policy_dir = policy.save(root / "policy")
    with bundled_code() as code_paths:  # what tracking.log_policy_model bundles
        mlflow.pyfunc.save_model(
            path=str(root / "model"),
            python_model=KlinePolicyModel(),
            artifacts={POLICY_ARTIFACT: str(policy_dir)},
            code_paths=code_paths,
            signature=model_signature(),
            input_example=input_example(klines, policy),
            pip_requirements=["mlflow"],
        )
    return policy, root / "model"


def test_the_loaded_model_gives_the_policys_q_values_and_action(saved: tuple, klines: pd.DataFrame) -> None:
    policy, path = saved
    model = mlflow.pyfunc.load_model(str(path))
    for hours in (24 * 10, 24 * 13, 24 * 16):
        window = input_example(klines[klines["open_time"] < klines["open_time"].min() + hours * 3_600_000], policy)
        out = model.predict(window)
        decision = policy.decide(window.assign(interval="1h"))
        assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == 1
        np.testing.assert_array_equal(out[["q_hold", "q_buy", "q_sell"]].to_numpy()[0], decision.q_values)
        assert int(out["action"].iloc[0]) == decision.action
        assert int(out["open_time"].iloc[0]) == decision.open_time


def test_the_input_example_is_the_last_history_hours_of_every_symbol(saved: tuple, klines: pd.DataFrame) -> None:
    policy, _ = saved
    example = input_example(klines, policy)
    assert example.groupby("symbol").size().eq(policy.history_hours).all()
    assert example["symbol"].nunique() == len(policy.spec.symbols)


def test_the_model_carries_the_models_package_its_pyfunc_module_and_the_policy_files(saved: tuple) -> None:
    _, path = saved
    assert (path / "code" / "models" / "policy.py").is_file()
    bundled = {p.relative_to(path / "code" / "adapters").as_posix() for p in (path / "code" / "adapters").rglob("*.py")}
    assert bundled == {"__init__.py", "mlflow/__init__.py", "mlflow/pyfunc.py"}  # not Kafka, Cassandra, ...
    assert {p.name for p in (path / "artifacts" / POLICY_ARTIFACT).iterdir()} >= {"policy.json", "weights.pt"}


def test_too_little_history_is_a_readable_error(saved: tuple, klines: pd.DataFrame) -> None:
    policy, path = saved
    model = mlflow.pyfunc.load_model(str(path))
    short = input_example(klines, policy).groupby("symbol").tail(5)
    with pytest.raises(PermanentError, match="send the last"):
        model.predict(short)


_FRESH_PROCESS = """
import json, sys
import mlflow.pyfunc, pandas as pd
out = mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.read_parquet(sys.argv[2]))
import adapters.mlflow.pyfunc, models.policy
print(json.dumps({"q": out[["q_hold", "q_buy", "q_sell"]].to_numpy()[0].tolist(), "action": int(out["action"][0]),
                  "modules": [adapters.mlflow.pyfunc.__file__, models.policy.__file__]}))
"""


@pytest.mark.slow
def test_a_fresh_process_without_the_repository_loads_the_model_from_its_bundled_code(
    saved: tuple, klines: pd.DataFrame, tmp_path: Path
) -> None:
    policy, path = saved
    window = input_example(klines, policy)
    window.to_parquet(tmp_path / "input.parquet")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}  # cwd = tmp_path: no repo
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(path), str(tmp_path / "input.parquet")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    decision = policy.decide(window.assign(interval="1h"))
    np.testing.assert_array_equal(np.asarray(result["q"], dtype=np.float32), decision.q_values)
    assert result["action"] == decision.action
    code = (path / "code").resolve()
    assert all(Path(module).resolve().is_relative_to(code) for module in result["modules"]), result["modules"]
