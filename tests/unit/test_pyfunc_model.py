"""The pyfunc model (models/pyfunc.py), saved and loaded locally (no tracking server): it rebuilds the
policy from its artifacts and decides exactly like the in-memory policy on the same klines."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from models.errors import PermanentError
from models.pyfunc import (
    MODELS_PACKAGE_DIR,
    OUTPUT_COLUMNS,
    POLICY_ARTIFACT,
    KlinePolicyModel,
    input_example,
    model_signature,
)
from tests.registry_helpers import random_policy, synthetic_klines


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    return synthetic_klines(hours=24 * 16)


@pytest.fixture(scope="module")
def saved(klines: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    policy = random_policy(klines, "lstm", seed=3)
    root = tmp_path_factory.mktemp("pyfunc")
    policy_dir = policy.save(root / "policy")
    mlflow.pyfunc.save_model(
        path=str(root / "model"),
        python_model=KlinePolicyModel(),
        artifacts={POLICY_ARTIFACT: str(policy_dir)},
        code_paths=[str(MODELS_PACKAGE_DIR)],
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


def test_the_model_carries_the_models_package_and_the_policy_files(saved: tuple) -> None:
    _, path = saved
    assert (path / "code" / "models" / "policy.py").is_file()
    assert {p.name for p in (path / "artifacts" / POLICY_ARTIFACT).iterdir()} >= {"policy.json", "weights.pt"}


def test_too_little_history_is_a_readable_error(saved: tuple, klines: pd.DataFrame) -> None:
    policy, path = saved
    model = mlflow.pyfunc.load_model(str(path))
    short = input_example(klines, policy).groupby("symbol").tail(5)
    with pytest.raises(PermanentError, match="send the last"):
        model.predict(short)
