"""Behaviour: on a series with an obvious daily cycle, both trained agents beat buy-and-hold.

The agents learn with the log-return reward in portfolio accounting (fees included); the test then
checks them in every accounting against buy-and-hold on unseen hours of the same synthetic market.
Two seeds train together as one batched ensemble (models/ensemble.py), and each must have learned:
a member trains like an agent trained alone (tests/unit/test_ensemble.py), so this also covers
``train_agent``, the ensemble of one.
"""

from __future__ import annotations

import pytest

from models.config import AgentConfig, EnvConfig, TrainConfig
from models.kline import HOUR_MS
from models.synthetic import START_MS, synthetic_klines
from models.time_range import TimeRange
from pipelines.dataset import build_dataset
from pipelines.evaluate import evaluate_policy
from pipelines.train import train_ensemble

TRAIN_DAYS, TEST_DAYS = 40, 15


@pytest.mark.parametrize("variant", ["linear", "lstm"])
def test_trained_agents_buy_troughs_and_sell_crests_better_than_buy_and_hold(variant: str) -> None:
    klines = synthetic_klines(24 * (TRAIN_DAYS + TEST_DAYS), seed=7)
    split = START_MS + 24 * TRAIN_DAYS * HOUR_MS
    train, test = TimeRange(START_MS, split), TimeRange(split, START_MS + 24 * (TRAIN_DAYS + TEST_DAYS) * HOUR_MS)
    dataset = build_dataset(klines, train)
    agent_config = AgentConfig(variant=variant, batch_size=256, target_sync_every=50, reward_scale=100.0)
    env_config = EnvConfig(
        accounting="portfolio", reward="log_return", position_step=1.0, fee_rate=0.001, episode_hours=240
    )
    train_config = TrainConfig(n_envs=32, total_env_steps=24_000, learning_starts=1_000, seed=0, threads=1)
    for result in train_ensemble(dataset, train, agent_config, env_config, train_config, seeds=(0, 1)):
        report = evaluate_policy(result.policy, klines, test, fee_rate=0.001)
        agent, buy_and_hold = report.agent, report.buy_and_hold
        assert buy_and_hold.portfolio_fees.total_return < 0  # the market drifts down: holding loses
        assert agent.portfolio_fees.total_return > 0.2
        assert agent.portfolio_fees.sharpe > buy_and_hold.portfolio_fees.sharpe
        assert agent.unit.final_profit > max(buy_and_hold.unit.final_profit, 0.0)
        assert agent.unit.n_buys > 10 and agent.unit.n_sells > 10
