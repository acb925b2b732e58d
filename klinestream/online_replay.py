"""The stream's trader replayed for the walk-forward: streaming/replay.py given to pipelines/walkforward.

``pipelines`` may not import ``streaming``; this top-layer function joins them. ``klinestream walkforward``
and the ``dqn_walkforward`` DAG pass :func:`walkforward_replay` to the walk-forward runner
(:class:`pipelines.walkforward.online.OnlineReplay`); it is module-level so worker processes find it by name.
"""

from __future__ import annotations

import pandas as pd

from models.config import EnvConfig
from models.policy import Policy
from models.time_range import TimeRange
from pipelines.walkforward.backtests import Curve
from pipelines.walkforward.online import OnlineCurve
from streaming.replay import ReplayConfig, replay


def walkforward_replay(
    policy: Policy,
    klines: pd.DataFrame,
    test: TimeRange,
    env: EnvConfig,
    seed: int,
    online: bool,
    hours_per_batch: int,
) -> OnlineCurve:
    """Trade ``policy`` over ``test`` with the stream's trader in ``env``'s accounting, fee and slippage;
    online learning (the stream's default online settings, seeded with ``seed``) on or off."""
    config = ReplayConfig(online=online, seed=seed, fee_rate=env.fee_rate, slippage_bps=env.slippage_bps,
                          accounting=env.accounting, hours_per_batch=hours_per_batch,
                          trader_id=f"walkforward-seed{seed}-{'online' if online else 'greedy'}")  # fmt: skip
    result = replay(policy, klines, test, config)
    fees, notional, n_trades = result.trading()
    explored = sum(1 for d in result.decisions if d.explored)
    return OnlineCurve(Curve(result.curve(), fees, notional, n_trades), result.online_updates, explored)
