"""Agent options (models/options.py): parsed at the edge to their field's type, validated as a whole with a
message naming the option, and carried the same way by the CLI, the retrain DAG and the walk-forward."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from klinestream.cli import app
from models.errors import PermanentError
from models.options import FLAG_FIELDS, apply_options, option_types, parse_options
from pipelines.retrain import train_configs
from pipelines.retrain_config import config_from_params
from pipelines.train import checked_options, default_configs
from pipelines.walkforward.runner import WalkForwardConfig, member_configs


def test_texts_and_json_values_become_their_fields_types() -> None:
    texts = ["min_hold_hours=4", "position_step=0.25", "turnover_penalty=0.5", "dueling=true", "ensemble_rule=vote",
             "validation_days=28"]  # fmt: skip
    expected = {"min_hold_hours": 4, "position_step": 0.25, "turnover_penalty": 0.5, "dueling": True,
                "ensemble_rule": "vote", "validation_days": 28}  # fmt: skip
    assert parse_options(texts) == expected
    assert parse_options({"min_hold_hours": 4, "position_step": 1, "dueling": False}) == {
        "min_hold_hours": 4, "position_step": 1.0, "dueling": False,
    }  # fmt: skip
    assert not FLAG_FIELDS & set(option_types())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["min_hold_hours=4.5"], "min_hold_hours: '4.5' is not an integer"),
        (["dueling=maybe"], "dueling: 'maybe' is not true or false"),
        (["turnover_penalty=nan"], "turnover_penalty: 'nan' is not a finite number"),
        ({"n_step": True}, "n_step: True is not an integer"),
        (["colour=red"], "unknown option 'colour'"),
        (["reward=reference"], "reward: set it with its own flag"),
        (["min_hold_hours"], "expected NAME=VALUE"),
        (["n_step=2", "n_step=3"], "n_step given twice"),
    ],
)
def test_a_malformed_option_is_refused_naming_it(options: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_options(options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "reward", "message"),
    [
        ({"position_step": 0.0}, "risk", "position_step"),
        ({"max_position": 1.5}, "risk", "max_position"),
        ({"min_hold_hours": -1}, "risk", "min_hold_hours"),
        ({"turnover_penalty": 0.1}, "reference", "turnover penalty needs"),
        ({"n_step": 0}, "risk", "n_step"),
        ({"ensemble_members": 0}, "risk", "ensemble_members"),
        ({"ensemble_rule": "median"}, "risk", "ensemble_rule"),
        ({"validation_days": -3}, "risk", "validation_days"),
        ({"patience": 2}, "risk", "set validation_days"),
    ],
)
def test_options_that_cannot_work_are_refused(options: dict[str, object], reward: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checked_options(options, ["linear", "lstm"], reward)


def test_options_land_on_the_config_that_owns_them() -> None:
    options = {"min_hold_hours": 4, "position_step": 0.25, "dueling": True, "ensemble_members": 3, "patience": 2,
               "validation_days": 28}  # fmt: skip
    agent, env, train = apply_options(default_configs("lstm"), options)
    assert (env.min_hold_hours, env.position_step, env.reward, env.fee_rate) == (4, 0.25, "risk", 0.001)
    assert (agent.dueling, agent.ensemble_members, agent.variant) == (True, 3, "lstm")
    assert (train.validation_days, train.patience) == (28, 2)


def test_the_retrain_dag_and_the_walkforward_train_with_their_options() -> None:
    config = config_from_params({"options": {"min_hold_hours": "6", "n_step": 3}})
    assert config.options == {"min_hold_hours": 6, "n_step": 3}
    agent, env, _ = train_configs("linear", 0, config, "cpu")
    assert (env.min_hold_hours, agent.n_step) == (6, 3)
    with pytest.raises(PermanentError, match="options: unknown option 'min_hold'"):
        config_from_params({"options": {"min_hold": 6}})
    walkforward = WalkForwardConfig(test_range="2022-01-01:2022-02-01", seeds=(0,), options={"position_step": "0.5"})
    assert WalkForwardConfig.from_dict(walkforward.to_dict()) == walkforward
    _, env, _ = member_configs("lstm", walkforward, "cpu", 1)
    assert env.position_step == 0.5
    with pytest.raises(PermanentError, match="turnover penalty needs"):
        WalkForwardConfig(reward="reference", options={"turnover_penalty": 0.2})


@pytest.mark.parametrize("command", ["train --variant linear --train 2021-01-01:2021-03-01", "walkforward"])
def test_the_cli_refuses_a_bad_option_in_one_line(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--option", "min_hold_hours=soon"])
    assert result.exit_code != 0
    assert "min_hold_hours: 'soon' is not an integer" in result.output


def test_every_option_is_logged_as_an_mlflow_param() -> None:
    from adapters.mlflow.tracking import training_params

    configs = apply_options(default_configs("linear"), {"min_hold_hours": 4, "ensemble_members": 3, "patience": 0})
    params = training_params(*configs)
    for name in option_types():
        assert sum(key.endswith(f".{name}") for key in params) == 1, name
    assert (params["env.min_hold_hours"], params["agent.ensemble_members"], params["env.reward"]) == (4, 3, "risk")


def test_the_walkforward_dag_params_carry_the_reward_and_the_options() -> None:
    from klinestream.airflow_dags import load_dag
    from pipelines.walkforward.runner import config_from_params as walkforward_params

    params = load_dag("dqn_walkforward").params.dump()
    assert walkforward_params(params) == WalkForwardConfig(fee_rate=0.001)
    config = walkforward_params({**params, "reward": "log_return", "options": {"min_hold_hours": 4}})
    assert (config.reward, config.options) == ("log_return", {"min_hold_hours": 4})
