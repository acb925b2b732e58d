"""Trading environment accounting against hand-computed trades (unit and portfolio accounting)."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import EnvConfig
from models.env import BUY, HOLD, SELL, VectorTradingEnv


def _run(close: list[float], actions: list[int], config: EnvConfig, tradable: list[bool] | None = None):
    prices = np.array(close, dtype=float)
    flags = np.ones(len(prices), bool) if tradable is None else np.array(tradable)
    env = VectorTradingEnv(prices, flags, config, 1, np.array([0]), auto_reset=False)
    env.reset(np.array([0]), np.array([len(prices) - 1]))
    rewards = [float(env.step(np.array([a])).rewards[0]) for a in actions]
    return env, rewards


def test_unit_accounting_sells_the_oldest_unit_first_and_rewards_positive_profit_only() -> None:
    env, rewards = _run([100, 110, 120, 90, 130], [BUY, BUY, SELL, SELL], EnvConfig(accounting="unit"))
    # buy@100, buy@110, sell@120 closes the 100 unit (+20), sell@90 closes the 110 unit (-20)
    assert env.realized_profit[0] == pytest.approx(0.0)
    assert rewards == [0.0, 0.0, 20.0, 0.0]
    assert (env.n_buys[0], env.n_sells[0], env.units[0]) == (2, 2, 0)
    assert env.cash[0] == pytest.approx(100_000 - 100 - 110 + 120 + 90)


def test_unit_accounting_refuses_a_buy_the_cash_does_not_cover() -> None:
    env, _ = _run([100, 100, 100, 100], [BUY, BUY, BUY], EnvConfig(accounting="unit", capital=250.0))
    assert env.n_buys[0] == 2 and env.units[0] == 2
    assert env.cash[0] == pytest.approx(50.0)


def test_unit_accounting_sell_without_units_and_outage_hours_do_nothing() -> None:
    env, rewards = _run(
        [100, 120, 130, 140], [SELL, BUY, SELL], EnvConfig(accounting="unit"), [True, False, True, True]
    )
    assert env.n_sells[0] == 0 and env.n_buys[0] == 0  # the buy fell on a missing hour: hold
    assert rewards == [0.0, 0.0, 0.0]


def test_unit_accounting_has_no_fees_even_when_configured() -> None:
    env, _ = _run([100, 150], [BUY], EnvConfig(accounting="unit", fee_rate=0.01))
    assert env.equity()[0] == pytest.approx(100_000 + 50)


def test_portfolio_accounting_charges_fee_and_slippage_per_side() -> None:
    config = EnvConfig(
        accounting="portfolio",
        reward="log_return",
        capital=1000.0,
        fee_rate=0.001,
        slippage_bps=10.0,
        position_step=1.0,
    )
    env, rewards = _run([100, 110, 110], [BUY, SELL], config)
    spend = 1000 / 1.001  # all the cash, leaving the fee
    quantity = spend / (100 * 1.001)  # 10 bps slippage on the buy
    proceeds = quantity * 110 * 0.999  # and on the sell
    expected = proceeds * (1 - 0.001)
    assert env.cash[0] == pytest.approx(expected)
    assert env.quantity[0] == pytest.approx(0.0)
    assert env.fees[0] == pytest.approx(spend * 0.001 + proceeds * 0.001)
    assert rewards[0] == pytest.approx(np.log((quantity * 110) / 1000), rel=1e-6)
    assert sum(rewards) == pytest.approx(np.log(expected / 1000), rel=1e-6)


def test_portfolio_accounting_steps_the_position_fraction_and_caps_it() -> None:
    config = EnvConfig(accounting="portfolio", reward="log_return", capital=1000.0, position_step=0.5)
    env, _ = _run([100, 100, 100, 100, 100], [BUY, BUY, BUY, SELL], config)
    assert env.n_buys[0] == 2  # the third buy finds the position full
    assert env.quantity[0] == pytest.approx(5.0)  # half sold again
    assert env.cash[0] == pytest.approx(500.0)


def test_risk_reward_subtracts_the_drawdown_increase() -> None:
    config = EnvConfig(accounting="portfolio", reward="risk", capital=1000.0, position_step=1.0, drawdown_penalty=2.0)
    _, rewards = _run([100, 80, 100], [BUY, HOLD], config)
    assert rewards[0] == pytest.approx(np.log(0.8) - 2.0 * 0.2)
    assert rewards[1] == pytest.approx(np.log(1.25))


def test_many_envs_step_independently_and_reset_at_episode_end() -> None:
    close = np.linspace(100, 200, 50)
    env = VectorTradingEnv(close, np.ones(50, bool), EnvConfig(episode_hours=5), 3, np.arange(40), seed=1)
    env.reset(np.array([0, 10, 20]))
    result = env.step(np.array([BUY, HOLD, SELL]))
    assert result.next_rows.tolist() == [1, 11, 21]
    assert env.n_buys.tolist() == [1, 0, 0]
    for _ in range(4):
        result = env.step(np.zeros(3, np.int64))
    assert result.truncated.all() and env.n_buys.tolist() == [0, 0, 0]  # auto-reset after 5 hours


def test_reference_reward_needs_unit_accounting() -> None:
    with pytest.raises(ValueError, match="unit accounting"):
        VectorTradingEnv(np.ones(3), np.ones(3, bool), EnvConfig(accounting="portfolio"), 1, np.array([0]))
