"""The online replay (streaming/replay.py): the stream's own trader (MicroBatchProcessor → OnlineTrader, as the
Spark job drives it) over history, with online learning off and on."""

from __future__ import annotations

import numpy as np
import torch

from klinestream.online_replay import walkforward_replay
from models.time_range import parse_range
from pipelines.walkforward.backtests import policy_curves, portfolio_config
from pipelines.walkforward.online import relative_gap
from streaming.replay import ReplayConfig, replay, weights
from tests.registry_helpers import random_policy, registry_klines

KLINES = registry_klines(seed=5)
TEST = parse_range("2022-01-15:2022-01-18")  # three days of the registry helpers' holdout


def test_learning_off_the_trader_trades_exactly_as_the_backtest() -> None:
    policy = random_policy(KLINES, "linear", seed=1)
    env = portfolio_config(0.001)
    online = walkforward_replay(policy, KLINES, TEST, env, seed=0, online=False, hours_per_batch=24)
    backtest = policy_curves(policy, KLINES, TEST, {1: 0.001})[1]
    assert online.online_updates == 0 and online.explored == 0
    assert relative_gap(online.curve.equity, backtest.equity) < 1e-9
    assert online.curve.n_trades == backtest.n_trades and abs(online.curve.fees - backtest.fees) < 1e-6


def test_learning_on_the_decisions_do_not_depend_on_how_hours_are_cut_into_micro_batches() -> None:
    policy = random_policy(KLINES, "linear", seed=1)
    runs = []
    for hours in (1, 24):
        torch.manual_seed(0)
        config = ReplayConfig(online=True, seed=7, hours_per_batch=hours)
        runs.append(replay(random_policy(KLINES, "linear", seed=1), KLINES, TEST, config))
    hourly, daily = runs
    assert len(hourly.decisions) == (TEST.end_ms - TEST.start_ms) // 3_600_000 and hourly.online_updates > 0
    assert np.array_equal(hourly.actions, daily.actions) and hourly.online_updates == daily.online_updates
    assert np.array_equal(hourly.curve(), daily.curve())
    for name, value in weights(hourly.trader).items():
        assert torch.equal(value, weights(daily.trader)[name]), name
    off = replay(policy, KLINES, TEST, ReplayConfig(online=False, hours_per_batch=24))
    assert off.online_updates == 0 and not any(d.explored for d in off.decisions)
