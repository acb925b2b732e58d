"""The champion/challenger gate's pure comparison (pipelines/promotion.py: compare_with_champion) and the
retrain params."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from models.errors import PermanentError
from models.evaluation import EvaluationReport, Metrics, PerAccounting
from models.time_range import TimeRange
from pipelines.promotion import CASH, HoldoutMetrics, below_baseline, compare_with_champion, decision_tags
from pipelines.retrain import train_configs
from pipelines.retrain_config import GateConfig, RetrainConfig, config_from_params

CONFIG = GateConfig(sharpe_margin=0.1, max_drawdown=0.3, drawdown_slack=0.05, min_trades=10)
CHAMPION = HoldoutMetrics(sharpe=1.0, max_drawdown=0.10, n_trades=40)


def test_a_challenger_that_beats_the_champion_by_more_than_the_margin_is_promoted() -> None:
    decision = compare_with_champion(HoldoutMetrics(1.2, 0.12, 30, 0.02), CHAMPION, CONFIG)
    assert decision.promote
    assert "beats champion" in decision.summary and "beat cash" in decision.summary


def test_a_worse_challenger_is_rejected_with_the_numbers_in_the_reason() -> None:
    decision = compare_with_champion(HoldoutMetrics(0.5, 0.10, 30), CHAMPION, CONFIG)
    assert not decision.promote
    assert "0.5000 does not beat champion 1.0000" in decision.summary


def test_a_tie_is_not_promoted_even_with_a_zero_margin() -> None:
    tie = HoldoutMetrics(1.0, 0.10, 40)
    assert not compare_with_champion(tie, CHAMPION, CONFIG).promote
    assert not compare_with_champion(tie, CHAMPION, GateConfig(sharpe_margin=0.0, min_trades=0)).promote


def test_a_better_sharpe_within_the_margin_is_not_enough() -> None:
    assert not compare_with_champion(HoldoutMetrics(1.05, 0.10, 40), CHAMPION, CONFIG).promote


def test_a_drawdown_above_the_absolute_bound_is_rejected_even_with_a_better_sharpe() -> None:
    decision = compare_with_champion(HoldoutMetrics(3.0, 0.31, 40), CHAMPION, CONFIG)
    assert not decision.promote
    assert "bound 0.3000" in decision.summary


def test_a_drawdown_much_worse_than_the_champions_is_rejected() -> None:
    decision = compare_with_champion(HoldoutMetrics(3.0, 0.16, 40), CHAMPION, CONFIG)
    assert not decision.promote
    assert "slack" in decision.summary


def test_too_few_trades_is_rejected() -> None:
    decision = compare_with_champion(HoldoutMetrics(3.0, 0.05, 9), CHAMPION, CONFIG)
    assert not decision.promote
    assert "9 trades < minimum 10" in decision.summary


def test_without_a_champion_the_absolute_bounds_and_the_baseline_decide() -> None:
    assert compare_with_champion(HoldoutMetrics(0.5, 0.2, 12, 0.01), None, CONFIG).promote
    assert not compare_with_champion(HoldoutMetrics(2.0, 0.4, 12, 0.05), None, CONFIG).promote
    assert not compare_with_champion(HoldoutMetrics(2.0, 0.2, 3, 0.05), None, CONFIG).promote
    assert not compare_with_champion(
        HoldoutMetrics(0.5, 0.2, 12, 0.01), None, GateConfig(min_sharpe=1.0, min_trades=0)
    ).promote


def test_a_loser_is_not_promoted_even_without_a_champion() -> None:
    decision = compare_with_champion(HoldoutMetrics(-0.5, 0.2, 12, -0.01), None, CONFIG)
    assert not decision.promote
    assert decision.reasons == ("return -0.0100 does not beat cash 0.0000", "sharpe -0.5000 does not beat cash 0.0000")


def test_a_non_finite_sharpe_is_never_promoted() -> None:
    assert not compare_with_champion(HoldoutMetrics(math.nan, 0.1, 40), None, CONFIG).promote


def test_every_failed_check_is_reported() -> None:
    decision = compare_with_champion(HoldoutMetrics(0.0, 0.5, 1), CHAMPION, CONFIG)
    assert len(decision.reasons) == 6  # cash: return and Sharpe; bound; trades; champion: Sharpe and drawdown


def test_holdout_metrics_come_from_the_portfolio_accounting_with_fees() -> None:
    figures = Metrics(final_profit=30.0, total_return=0.03, sharpe=1.5, max_drawdown=0.2, n_buys=6, n_sells=6,
                      n_trades=12, fees=1.0)  # fmt: skip
    other = replace(figures, sharpe=9.0)
    report = EvaluationReport(744, PerAccounting(other, other, figures), PerAccounting(other, other, other))
    assert HoldoutMetrics.from_report(report) == HoldoutMetrics(1.5, 0.2, 12, 0.03)


def test_dag_params_become_a_retrain_config_with_gate_fields() -> None:
    config = config_from_params(
        {
            "train_range": "2022-01-01:2022-02-01",
            "test_range": "2022-02-01:2022-03-01",
            "variants": ["lstm"],
            "seeds": [1, 2],
            "episodes": 2,
            "episode_hours": 48,
            "n_envs": None,
            "promote": False,
            "gate_sharpe_margin": 0.0,
            "gate_min_trades": 3,
        }
    )
    assert config.variants == ("lstm",) and config.seeds == (1, 2) and config.episodes == 2
    assert config.n_envs is None and not config.promote
    assert config.gate == GateConfig(sharpe_margin=0.0, min_trades=3)


@pytest.mark.parametrize(
    ("params", "message"), [({"variants": ["cnn"]}, "variants must be among"), ({"train_range": "2022"}, "START:END")]
)
def test_bad_dag_params_fail_with_a_readable_error(params: dict[str, object], message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        config_from_params(params)


def test_fewer_episodes_scale_the_training_down() -> None:
    config = config_from_params({"episodes": 2, "episode_hours": 48, "n_envs": 4})
    agent, env, train = train_configs("linear", 3, config, "cpu")
    assert (env.episode_hours, train.n_envs, train.total_env_steps, train.seed) == (48, 4, 2 * 48 * 4, 3)
    assert train.learning_starts <= train.total_env_steps // 4
    assert agent.batch_size <= train.total_env_steps


def test_the_retrain_dag_params_default_to_the_retrain_and_gate_configs() -> None:
    from klinestream.airflow_dags import load_dag

    params = load_dag("dqn_retrain").params.dump()
    assert config_from_params(params) == RetrainConfig()
    assert {k: params[f"gate_{k}"] for k in ("sharpe_margin", "max_drawdown", "drawdown_slack", "min_trades")} == {
        k: getattr(GateConfig(), k) for k in ("sharpe_margin", "max_drawdown", "drawdown_slack", "min_trades")
    }


def test_a_retrain_config_keeps_its_ranges_parsed_and_gives_them_back_as_text() -> None:
    config = config_from_params({"train_range": "2022-01-01:2022-02-01", "test_range": "2022-02-01:2022-03-01"})
    assert config.test_range == TimeRange.from_bounds("2022-02-01", "2022-03-01")
    assert config.train_range.end_ms - config.train_range.start_ms == 31 * 24 * 3_600_000
    assert config.to_dict()["train_range"] == "2022-01-01:2022-02-01"


BUY_AND_HOLD = HoldoutMetrics(sharpe=1.5, max_drawdown=0.08, n_trades=2, total_return=0.06)


def test_a_challenger_that_beats_the_champion_but_not_the_baseline_is_not_promoted() -> None:
    config = replace(CONFIG, baseline="buy_and_hold")
    challenger = HoldoutMetrics(1.3, 0.10, 30, 0.04)
    decision = compare_with_champion(challenger, CHAMPION, config, BUY_AND_HOLD)
    assert not decision.promote
    assert decision.reasons == (
        "return 0.0400 does not beat buy_and_hold 0.0600",
        "sharpe 1.3000 does not beat buy_and_hold 1.5000",
    )
    tags = decision_tags(decision, 3, "2022-01-15:2022-01-22")
    assert tags["gate.decision"] == "rejected" and tags["gate.baseline"] == "buy_and_hold"
    assert tags["gate.baseline.total_return"] == 0.06 and tags["gate.challenger.total_return"] == 0.04
    assert "does not beat buy_and_hold" in tags["gate.reason"] and "champion" not in tags["gate.reason"]
    assert compare_with_champion(HoldoutMetrics(1.6, 0.10, 30, 0.07), CHAMPION, config, BUY_AND_HOLD).promote


def test_beating_the_baseline_in_return_but_not_in_sharpe_is_not_enough() -> None:
    trend = HoldoutMetrics(sharpe=1.5, max_drawdown=0.05, n_trades=14, total_return=0.06)
    decision = compare_with_champion(
        HoldoutMetrics(1.2, 0.10, 30, 0.07), None, replace(CONFIG, baseline="trend"), trend
    )
    assert decision.reasons == ("sharpe 1.2000 does not beat trend 1.5000",)


def test_a_champion_below_the_baseline_is_named_with_the_reasons() -> None:
    assert below_baseline(CHAMPION, BUY_AND_HOLD, "buy_and_hold") == [
        "return 0.0000 does not beat buy_and_hold 0.0600",
        "sharpe 1.0000 does not beat buy_and_hold 1.5000",
    ]
    assert below_baseline(replace(CHAMPION, sharpe=2.0, total_return=0.1), BUY_AND_HOLD, "buy_and_hold") == []
    assert below_baseline(HoldoutMetrics(0.1, 0.01, 4, 0.001), CASH, "cash") == []


def test_an_unknown_gate_baseline_is_a_readable_error() -> None:
    with pytest.raises(PermanentError, match="gate baseline must be one of"):
        config_from_params({"gate_baseline": "moon"})
