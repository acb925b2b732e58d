"""Online learning in the walk-forward: each member's test month replayed through the stream's trader.

``pipelines`` may not import ``streaming`` (tests/unit/test_import_direction.py), so the replay is given
to the walk-forward by the layer above (klinestream/online_replay.py, used by ``klinestream walkforward``
and the ``dqn_walkforward`` DAG) as an :class:`OnlineReplay`: a callable that trades a trained policy over
a test month hour by hour, as the live stream would, with online learning off or on, and returns the
month's :class:`OnlineCurve` in the walk-forward's accounting (portfolio, same fee and slippage).

Learning off, the replay must equal the backtest of the same policy (the stream acts greedily with the
served weights): every member's largest relative difference is recorded (``off_vs_backtest``), so the
report shows that the "off" curve is the agent's curve and the "on" curve differs by online learning only
(and the exploration that comes with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from models.config import EnvConfig
from models.policy import Policy
from models.time_range import TimeRange
from pipelines.walkforward.backtests import Curve

MODES = ("off", "on")


@dataclass(frozen=True)
class OnlineCurve:
    """A test month as the stream's trader traded it."""

    curve: Curve
    online_updates: int
    """Gradient steps the trader took during the month (0 with learning off)."""
    explored: int = 0
    """Hours whose action was an exploration draw."""


class OnlineReplay(Protocol):
    """Trade ``policy`` over ``test`` (``klines`` include its history) with the stream's trader."""

    def __call__(
        self,
        policy: Policy,
        klines: pd.DataFrame,
        test: TimeRange,
        env: EnvConfig,
        seed: int,
        online: bool,
        hours_per_batch: int,
    ) -> OnlineCurve: ...


def relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b| / b`` of two equity curves (inf when their lengths differ)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b) / np.abs(b)))


def replay_member(
    replay: OnlineReplay,
    policy: Policy,
    klines: pd.DataFrame,
    test: TimeRange,
    env: EnvConfig,
    seed: int,
    hours_per_batch: int,
    backtest: Curve,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(equity arrays by mode, the JSON facts: fees, notional, trades, updates, the gap to the backtest)."""
    arrays: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}
    for mode in MODES:
        result = replay(policy, klines, test, env, seed, mode == "on", hours_per_batch)
        c = result.curve
        arrays[mode] = c.equity
        info[mode] = {"fees": c.fees, "notional": c.notional, "n_trades": c.n_trades,
                      "online_updates": result.online_updates, "explored": result.explored}  # fmt: skip
    info["off_vs_backtest"] = relative_gap(arrays["off"], backtest.equity)
    return arrays, info
