"""Evaluation (shared/DESIGN.md §7): backtests of a policy and of buy-and-hold on a test range.

For a policy: unit-accounting final profit (realised, FIFO, no fees; comparable with the reference
Table I), #buys, #sells; portfolio accounting (position as a fraction of equity) with and without
fees: total return, Sharpe (hourly returns, annualised), max drawdown, #trades. The same for
buy-and-hold (all in at the first close, out at the last decision).

Decisions come from :meth:`Policy.q_values_from_states` on :meth:`Policy.states` — the same code path
as the stream — and the backtest steps many envs at once through :class:`~models.env.VectorTradingEnv`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from models.accounting import with_turnover_rules
from models.config import EnvConfig
from models.env import BUY, HOLD, SELL, VectorTradingEnv
from models.evaluation import Backtest, Curves, EvaluationReport, Metrics, PerAccounting, ReportedAccounting
from models.policy import Policy
from models.time_range import RangeError, TimeRange

HOURS_PER_YEAR = 24 * 365


def sharpe_ratio(equity: np.ndarray) -> float:
    returns = np.diff(equity) / equity[:-1]
    std = returns.std()
    return float(returns.mean() / std * math.sqrt(HOURS_PER_YEAR)) if std > 0 else 0.0


def max_drawdown(equity: np.ndarray) -> float:
    return float(np.max(1.0 - equity / np.maximum.accumulate(equity)))


#: Chooses the actions ``[n]`` of step ``i`` given the environments (their rows and accounts).
DecideFn = Callable[[int, VectorTradingEnv], np.ndarray]


def run_backtest(
    close: np.ndarray,
    tradable: np.ndarray,
    rows: np.ndarray,
    decide: DecideFn | np.ndarray,
    config: EnvConfig,
    n_envs: int | None = None,
) -> Backtest:
    """Step ``n`` envs over the consecutive ``rows``, one decision per row but the last.

    ``decide`` is a function of (step, env) or a fixed action array ``[n, N-1]``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if np.any(np.diff(rows) != 1):
        raise RangeError("backtest rows must be consecutive hours")
    if isinstance(decide, np.ndarray):
        fixed = np.atleast_2d(decide)
        n_envs, decide = fixed.shape[0], lambda i, _env: fixed[:, i]
    n = n_envs or 1
    env = VectorTradingEnv(close, tradable, config, n, rows[:1], auto_reset=False, last_row=int(rows[-1]))
    env.reset(np.full(n, rows[0]), np.full(n, rows[-1]))
    equity = np.empty((n, len(rows)))
    buys, sells = np.zeros((n, len(rows)), bool), np.zeros((n, len(rows)), bool)
    equity[:, 0] = env.equity()
    for i in range(len(rows) - 1):
        before_buys, before_sells = env.n_buys.copy(), env.n_sells.copy()
        env.step(decide(i, env))
        buys[:, i], sells[:, i] = env.n_buys > before_buys, env.n_sells > before_sells
        equity[:, i + 1] = env.equity()
    return Backtest(rows, equity, buys, sells, [_metrics(env, equity[k], k) for k in range(n)])


def _metrics(env: VectorTradingEnv, equity: np.ndarray, k: int) -> Metrics:
    capital = env.config.capital
    unit = env.config.accounting == "unit"
    return Metrics(
        final_profit=float(env.realized_profit[k] if unit else equity[-1] - capital),
        total_return=float(equity[-1] / capital - 1.0),
        sharpe=sharpe_ratio(equity),
        max_drawdown=max_drawdown(equity),
        n_buys=int(env.n_buys[k]),
        n_sells=int(env.n_sells[k]),
        n_trades=int(env.n_buys[k] + env.n_sells[k]),
        fees=float(env.fees[k]),
    )


def buy_and_hold(close: np.ndarray, tradable: np.ndarray, rows: np.ndarray, config: EnvConfig) -> Metrics:
    """Buy-and-hold: portfolio = all in at the first close, out at the close of the last decision hour
    (the second-to-last hour; the last close only marks the equity, as for the agent);
    unit = one unit bought per hour from the start while the capital allows (as many as the first
    close allows), the same number sold one per hour at the end."""
    if config.accounting == "portfolio":
        all_in = replace(config, position_step=config.max_position)
        actions = np.full(len(rows) - 1, HOLD)
        actions[0], actions[-1] = BUY, SELL
        return run_backtest(close, tradable, rows, actions, all_in).metrics[0]
    units = int(config.capital // close[rows[0]])
    actions = np.full(len(rows) - 1, HOLD)
    actions[:units] = BUY
    actions[-units:] = SELL
    return run_backtest(close, tradable, rows, actions, config).metrics[0]


def policy_decider(policy: Policy, klines: pd.DataFrame, test: TimeRange) -> tuple[np.ndarray, DecideFn, Any]:
    """(test rows, greedy decision function, feature table) of ``policy`` on ``test``.

    Each decision is ``argmax policy.q_values_from_states(window, account)``: the serving path.
    """
    table, index, states = policy.states(klines)
    inside = (table.open_time[index] >= test.start_ms) & (table.open_time[index] < test.end_ms)
    rows, windows = index[inside], states[inside]
    if len(rows) < 2 or np.any(np.diff(rows) != 1):
        raise RangeError(f"test range {test} needs consecutive hours with states (klines with history before it)")
    first = int(rows[0])

    def decide(_step: int, env: VectorTradingEnv) -> np.ndarray:
        q = policy.q_values_from_states(windows[env.rows - first], env.account())
        return q.argmax(axis=1)

    return rows, decide, table


def accounting_configs(fee_rate: float = 0.001, slippage_bps: float = 0.0) -> dict[ReportedAccounting, EnvConfig]:
    """The three accountings reported: unit (no fees), portfolio without and with fees."""
    return {
        "unit": EnvConfig(accounting="unit"),
        "portfolio_no_fees": EnvConfig(accounting="portfolio", reward="log_return"),
        "portfolio_fees": EnvConfig(
            accounting="portfolio", reward="log_return", fee_rate=fee_rate, slippage_bps=slippage_bps
        ),
    }


def evaluate_policy(
    policy: Policy, klines: pd.DataFrame, test: TimeRange, fee_rate: float = 0.001, slippage_bps: float = 0.0
) -> EvaluationReport:
    """Metrics of the policy and of buy-and-hold in every accounting, plus the curves for plots. The policy
    trades by its training turnover rules (exposure step, cap, minimum holding time) in every accounting."""
    rows, decide, table = policy_decider(policy, klines, test)
    agent: dict[str, Metrics] = {}
    hold: dict[str, Metrics] = {}
    curves: dict[str, Backtest] = {}
    for name, config in accounting_configs(fee_rate, slippage_bps).items():
        result = run_backtest(table.close, table.tradable, rows, decide, with_turnover_rules(config, policy.env_config))
        agent[name], curves[name] = result.metrics[0], result
        hold[name] = buy_and_hold(table.close, table.tradable, rows, config)
    series = Curves(table.open_time[rows], table.close[rows], PerAccounting.from_mapping(curves))
    return EvaluationReport(len(rows), PerAccounting.from_mapping(agent), PerAccounting.from_mapping(hold), series)
