"""Backtests of a fold's test month: the trained policies and the baselines, through one environment.

Every strategy runs through :func:`pipelines.evaluate.run_backtest` (the vectorised trading env with
portfolio accounting, fees and slippage), on the same test hours:

- **agents**: the greedy decisions of each trained :class:`~models.policy.Policy` through the serving
  path (:func:`pipelines.evaluate.policy_decider`);
- **cash**: always flat (hold);
- **buy-and-hold**: all in at the first decision, out at the last (as :func:`pipelines.evaluate.buy_and_hold`);
- **trend**: all in while the close is above its ``trend_hours`` moving average, flat otherwise. The
  window (168 h, one week, by default) is fixed a priori and never tuned on test months.

Each backtest also records the position before every step, so the traded notional (turnover) is known
whatever the fee.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from models.accounting import with_turnover_rules
from models.config import EnvConfig
from models.env import BUY, HOLD, SELL, VectorTradingEnv
from models.features import FeatureSpec, compute_feature_table, state_rows
from models.policy import Policy
from models.time_range import RangeError, TimeRange
from pipelines.evaluate import DecideFn, policy_decider, run_backtest

BASELINES = ("cash", "buy_and_hold", "trend")
DEFAULT_TREND_HOURS = 168
FEE_MULTIPLES = (1, 2, 3)


@dataclass(frozen=True)
class Curve:
    """One strategy's test month: hourly equity marks and what its trades cost."""

    equity: np.ndarray  # float64 [N], marked at each test hour's close
    fees: float  # quote currency
    notional: float  # traded notional at the close, quote currency
    n_trades: int


def portfolio_config(fee_rate: float, slippage_bps: float = 0.0) -> EnvConfig:
    """Portfolio accounting with ``fee_rate`` per side (the walk-forward's accounting for every strategy)."""
    return EnvConfig(accounting="portfolio", reward="log_return", fee_rate=fee_rate, slippage_bps=slippage_bps)


class _Recorder:
    """Wraps a decision function and records the position before each step (and the env, for the last)."""

    def __init__(self, decide: DecideFn) -> None:
        self.decide = decide
        self.positions: list[np.ndarray] = []
        self.env: VectorTradingEnv | None = None

    def __call__(self, step: int, env: VectorTradingEnv) -> np.ndarray:
        self.env = env
        self.positions.append(env.quantity.copy())
        return self.decide(step, env)

    def notional(self, prices: np.ndarray) -> np.ndarray:
        """Traded notional per env at the decision hours' ``prices`` ``[N - 1]``."""
        assert self.env is not None, "the backtest took no step"
        held = np.stack([*self.positions, self.env.quantity])
        return np.sum(np.abs(np.diff(held, axis=0)) * prices[:, None], axis=0)


def run_curve(close: np.ndarray, tradable: np.ndarray, rows: np.ndarray, decide: DecideFn, config: EnvConfig) -> Curve:
    """Backtest one strategy over ``rows`` and return its :class:`Curve`."""
    recorder = _Recorder(decide)
    result = run_backtest(close, tradable, rows, recorder, config)
    metrics = result.metrics[0]
    notional = float(recorder.notional(close[rows[:-1]])[0])
    return Curve(result.equity[0], metrics.fees, notional, metrics.n_trades)


@dataclass(frozen=True)
class FoldMarket:
    """The traded symbol's closes and the test rows (hours with a state) of one fold."""

    open_time: np.ndarray  # int64 [T]
    close: np.ndarray  # float64 [T]
    tradable: np.ndarray  # bool [T]
    rows: np.ndarray  # int64 [N] consecutive test rows

    @classmethod
    def from_klines(cls, klines: pd.DataFrame, spec: FeatureSpec, test: TimeRange) -> FoldMarket:
        table = compute_feature_table(klines, spec)
        inside = (table.open_time >= test.start_ms) & (table.open_time < test.end_ms)
        rows = np.flatnonzero(inside & state_rows(table, spec.window))
        if len(rows) < 2 or np.any(np.diff(rows) != 1):
            raise RangeError(f"test range {test} needs consecutive hours with states (klines with history before it)")
        return cls(table.open_time, table.close, table.tradable, rows)


def moving_average(close: np.ndarray, hours: int) -> np.ndarray:
    """Mean of the ``hours`` closes ending at each row (NaN before the first full window)."""
    sums = np.cumsum(np.concatenate([[0.0], np.asarray(close, dtype=np.float64)]))
    out = np.full(len(close), np.nan)
    out[hours - 1 :] = (sums[hours:] - sums[:-hours]) / hours
    return out


def baseline_decider(kind: str, market: FoldMarket, trend_hours: int = DEFAULT_TREND_HOURS) -> DecideFn:
    """The decision function of a baseline over ``market.rows`` (one decision per row but the last)."""
    n = len(market.rows) - 1
    if kind == "cash":
        return lambda _step, env: np.full(env.n_envs, HOLD)
    if kind == "buy_and_hold":
        actions = np.full(n, HOLD)
        actions[0], actions[-1] = BUY, SELL
        return lambda step, env: np.full(env.n_envs, actions[step])
    if kind == "trend":
        average = moving_average(market.close, trend_hours)[market.rows]
        if np.isnan(average).any():
            raise RangeError(f"the trend rule needs {trend_hours} hours of klines before the test range")
        above = market.close[market.rows] > average

        def decide(step: int, env: VectorTradingEnv) -> np.ndarray:
            held = env.quantity > 0
            return np.where(above[step] & ~held, BUY, np.where(~above[step] & held, SELL, HOLD))

        return decide
    raise ValueError(f"unknown baseline {kind!r}; choose one of {BASELINES}")


def baseline_curve(
    kind: str, market: FoldMarket, fee_rate: float, slippage_bps: float = 0.0, trend_hours: int = DEFAULT_TREND_HOURS
) -> Curve:
    """A baseline's :class:`Curve`; buy-and-hold and the trend rule go all in (position step = 1)."""
    config = portfolio_config(fee_rate, slippage_bps)
    if kind != "cash":
        config = replace(config, position_step=config.max_position)
    decide = baseline_decider(kind, market, trend_hours)
    return run_curve(market.close, market.tradable, market.rows, decide, config)


def policy_curves(
    policy: Policy, klines: pd.DataFrame, test: TimeRange, fee_rates: dict[int, float], slippage_bps: float = 0.0
) -> dict[int, Curve]:
    """The policy's :class:`Curve` at each fee (keyed by fee multiple), decisions through the serving path."""
    rows, decide, table = policy_decider(policy, klines, test)
    trained = policy.env_config  # the policy trades by its training turnover rules
    return {
        multiple: run_curve(
            table.close, table.tradable, rows, decide, with_turnover_rules(portfolio_config(fee, slippage_bps), trained)
        )
        for multiple, fee in fee_rates.items()
    }


def fee_rates(fee_rate: float, multiples: tuple[int, ...] = FEE_MULTIPLES) -> dict[int, float]:
    return {m: fee_rate * m for m in multiples}
