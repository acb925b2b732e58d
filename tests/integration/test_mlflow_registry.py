"""The registered model and the champion/challenger gate against the real MLflow server of the stack.

Round trip: a run is logged, its pyfunc registered and made champion, and the model loaded back by the
alias (as a pyfunc and through the stream's loader) gives exactly the in-memory policy's Q-values.
Gate: on the same holdout klines, a better challenger is promoted, a worse one and a tie are not,
rollback restores the previous champion, and every decision is readable as tags on the versions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from adapters.mlflow import aliases, registry, tracking
from adapters.mlflow.pyfunc import input_example
from models.config import AgentConfig, EnvConfig, TrainConfig
from models.env import BUY, HOLD
from models.policy import Policy
from models.settings import Settings
from models.time_range import parse_range
from pipelines import promotion
from pipelines.retrain_config import GateConfig
from tests.integration.conftest import StackHandle
from tests.registry_helpers import (
    TEST_RANGE,
    TRAIN_RANGE,
    constant_policy,
    mlflow_login,
    random_policy,
    registry_klines,
)
from tests.streaming_fakes import ListAlerts

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def mlflow_uri(stack: StackHandle, settings: Settings) -> Iterator[str]:
    stack.require("mlflow")
    previous = mlflow.get_tracking_uri()
    tracking.use_experiment(settings.mlflow_tracking_uri, "klinestream-tests")
    yield settings.mlflow_tracking_uri
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def model_name() -> str:
    return f"klinestream-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def uptrend() -> pd.DataFrame:
    """Klines whose traded symbol rises steadily: holding it has a high Sharpe, staying out has 0."""
    return registry_klines(drift=0.002, vol=0.004, seed=5)


def register(uri: str, name: str, policy: Policy, klines: pd.DataFrame, folder: Path) -> int:
    """Log ``policy`` in a run of the tests experiment and register it as a new version (the challenger)."""
    tracking.use_experiment(uri, "klinestream-tests")
    with mlflow.start_run(tags=tracking.run_tags(policy.variant, 0, TRAIN_RANGE, TEST_RANGE)):
        mlflow.log_params(tracking.training_params(AgentConfig(variant=policy.variant), EnvConfig(), TrainConfig(),
                                                   policy))  # fmt: skip
        tracking.log_history([{"env_steps": 100, "loss": 0.5, "epsilon": 0.6}, {"env_steps": 200, "loss": 0.25}])
        model_uri = tracking.log_policy_model(policy.save(folder / uuid.uuid4().hex), klines)
    version = tracking.register_model(uri, model_uri, name, {"variant": policy.variant})
    aliases.set_challenger(registry.registry_client(uri), name, version)
    return version


def version_tags(uri: str, name: str, version: int) -> dict[str, str]:
    """A version's tags, read through MLflow's REST API (what the UI shows)."""
    response = requests.get(f"{uri}/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version},
                            auth=mlflow_login(), timeout=10)  # fmt: skip
    response.raise_for_status()
    return {t["key"]: t["value"] for t in response.json()["model_version"].get("tags", [])}


def test_a_model_loaded_by_alias_gives_exactly_the_in_memory_policys_q_values(
    mlflow_uri: str, model_name: str, tmp_path: Path
) -> None:
    klines = registry_klines(seed=11)
    policy = random_policy(klines, "lstm", seed=7)
    version = register(mlflow_uri, model_name, policy, klines, tmp_path)
    aliases.promote(registry.registry_client(mlflow_uri), model_name, version, "test", mlflow_uri)

    assert registry.alias_version(mlflow_uri, model_name) == version
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
    loaded = registry.load_champion(mlflow_uri, model_name)
    assert (loaded.version, loaded.variant) == (version, "lstm")
    test = parse_range(TEST_RANGE)
    for end in range(test.start_ms, test.end_ms, 17 * HOUR_MS):
        window = input_example(klines[klines["open_time"] <= end], policy)
        expected = policy.decide(window.assign(interval="1h"))
        out = pyfunc.predict(window)
        np.testing.assert_array_equal(out[["q_hold", "q_buy", "q_sell"]].to_numpy()[0], expected.q_values)
        assert (int(out["action"].iloc[0]), int(out["open_time"].iloc[0])) == (expected.action, end)
        np.testing.assert_array_equal(loaded.policy.q_values(window.assign(interval="1h")), expected.q_values)

    run = mlflow.get_run(loaded.run_id)
    assert run.data.params["feature.spec_version"] == str(policy.spec.version)
    assert run.data.tags["variant"] == "lstm" and run.data.tags["git_commit"]
    assert version_tags(mlflow_uri, model_name, version)["variant"] == "lstm"


def test_the_gate_promotes_a_better_challenger_and_rejects_a_worse_one_and_a_tie(
    mlflow_uri: str, model_name: str, uptrend: pd.DataFrame, tmp_path: Path
) -> None:
    holdout = parse_range(TEST_RANGE)
    strict = GateConfig(sharpe_margin=0.1, max_drawdown=0.5, min_trades=1)
    stay_out = register(mlflow_uri, model_name, constant_policy(uptrend, HOLD), uptrend, tmp_path)
    first = promotion.gate_version(mlflow_uri, model_name, stay_out, uptrend, holdout,
                                   GateConfig(min_trades=0))  # fmt: skip
    assert not first.promote and registry.alias_version(mlflow_uri, model_name) is None  # doing nothing ≠ cash+
    tags = version_tags(mlflow_uri, model_name, stay_out)
    assert tags["gate.champion_version"] == "none" and tags["gate.baseline"] == "cash"
    assert tags["gate.reason"] == "return 0.0000 does not beat cash 0.0000; sharpe 0.0000 does not beat cash 0.0000"
    # a person makes it the champion anyway (as the MLflow UI can): the next gate flags it below the baseline
    aliases.promote(registry.registry_client(mlflow_uri), model_name, stay_out, "test", mlflow_uri)

    buyer = register(mlflow_uri, model_name, constant_policy(uptrend, BUY), uptrend, tmp_path)
    sink = ListAlerts()
    better = promotion.gate_version(mlflow_uri, model_name, buyer, uptrend, holdout, strict, alerts=sink)
    assert sink.kinds() == ["champion_below_baseline", "gate_decision"]
    assert sink.alerts[0].details["version"] == stay_out and "does not beat cash" in sink.alerts[0].message
    assert better.promote and better.challenger.sharpe > better.champion.sharpe + 0.1  # type: ignore[union-attr]
    assert registry.alias_version(mlflow_uri, model_name) == buyer
    assert registry.alias_version(mlflow_uri, model_name, "previous") == stay_out
    tags = version_tags(mlflow_uri, model_name, buyer)
    assert tags["gate.decision"] == "promoted" and tags["gate.champion_version"] == str(stay_out)
    assert float(tags["gate.challenger.sharpe"]) == pytest.approx(better.challenger.sharpe)
    assert tags["gate.holdout"] == TEST_RANGE
    assert version_tags(mlflow_uri, model_name, stay_out)["gate.displaced_by"] == str(buyer)
    below = version_tags(mlflow_uri, model_name, stay_out)
    assert below["gate.below_baseline"].startswith("return 0.0000 does not beat cash")
    assert below["gate.below_baseline.holdout"] == TEST_RANGE

    worse = register(mlflow_uri, model_name, constant_policy(uptrend, HOLD), uptrend, tmp_path)
    sink = ListAlerts()
    assert not promotion.gate_version(mlflow_uri, model_name, worse, uptrend, holdout, strict, alerts=sink).promote
    assert sink.kinds() == ["gate_decision"]  # the champion (buyer) beats cash: no flag
    tie = register(mlflow_uri, model_name, constant_policy(uptrend, BUY), uptrend, tmp_path)
    tied = promotion.gate_version(mlflow_uri, model_name, tie, uptrend, holdout, strict)
    assert not tied.promote and tied.challenger == tied.champion

    assert registry.alias_version(mlflow_uri, model_name) == buyer
    assert registry.alias_version(mlflow_uri, model_name, "challenger") == tie
    for rejected in (worse, tie):
        tags = version_tags(mlflow_uri, model_name, rejected)
        assert tags["gate.decision"] == "rejected" and tags["gate.champion_version"] == str(buyer)
        assert "does not beat champion" in tags["gate.reason"]
    assert version_tags(mlflow_uri, model_name, buyer)["gate.below_baseline"] == "no"  # the champion beats cash


def test_rollback_restores_the_previous_champion(
    mlflow_uri: str, model_name: str, uptrend: pd.DataFrame, tmp_path: Path
) -> None:
    client = registry.registry_client(mlflow_uri)
    old = register(mlflow_uri, model_name, random_policy(uptrend, "linear", seed=1), uptrend, tmp_path)
    new = register(mlflow_uri, model_name, random_policy(uptrend, "linear", seed=2), uptrend, tmp_path)
    aliases.promote(client, model_name, old, "test", mlflow_uri)
    assert aliases.promote(client, model_name, new, "test", mlflow_uri) == old

    assert aliases.rollback(client, model_name, mlflow_uri) == old
    assert registry.alias_version(mlflow_uri, model_name) == old
    assert registry.alias_version(mlflow_uri, model_name, "previous") is None
    assert registry.load_champion(mlflow_uri, model_name).version == old
    assert version_tags(mlflow_uri, model_name, new)["gate.rolled_back"] == "true"
    assert version_tags(mlflow_uri, model_name, old)["gate.promoted_by"] == "rollback"
    with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
        aliases.rollback(client, model_name, mlflow_uri)


def test_the_loader_says_what_to_do_when_there_is_no_champion(mlflow_uri: str, model_name: str) -> None:
    assert registry.alias_version(mlflow_uri, model_name) is None
    with pytest.raises(registry.RegistryError, match="run the dqn_retrain DAG"):
        registry.load_champion(mlflow_uri, model_name)


def test_the_promote_command_moves_gates_and_rolls_back_the_champion(
    mlflow_uri: str, model_name: str, uptrend: pd.DataFrame, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from adapters import lake
    from klinestream.cli import app

    stay_out = register(mlflow_uri, model_name, constant_policy(uptrend, HOLD), uptrend, tmp_path)
    buyer = register(mlflow_uri, model_name, constant_policy(uptrend, BUY), uptrend, tmp_path)
    start, end = int(uptrend["open_time"].min()), int(uptrend["open_time"].max()) + HOUR_MS
    lake.write_range(tmp_path / "lake", "validated", uptrend, start, end)
    env = {"KLINESTREAM_MLFLOW_TRACKING_URI": mlflow_uri, "KLINESTREAM_MLFLOW_MODEL_NAME": model_name,
           "KLINESTREAM_LAKE_DIR": str(tmp_path / "lake")}  # fmt: skip
    runner = CliRunner()

    def promote(*args: str) -> str:
        result = runner.invoke(app, ["promote", *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return str(result.output)

    assert f"champion = version {stay_out}" in promote("--model", str(stay_out))
    assert "promoted" in promote("--auto", "--min-trades", "1")  # the challenger (buyer), on its test_range tag
    assert registry.alias_version(mlflow_uri, model_name) == buyer
    assert f"champion = version {stay_out}" in promote("--rollback")
    assert registry.alias_version(mlflow_uri, model_name) == stay_out
    assert runner.invoke(app, ["promote", "--model", "1", "--rollback"], env=env).exit_code != 0
