"""A vectorised trading environment: many copies stepped at once on preallocated numpy arrays.

Observations are *row indices* into the feature table (the state of the reference system depends on
the market only, not on the position), so the replay stores indices and the agent gathers windows.

Actions: 0 hold, 1 buy, 2 sell, executed at the close of the current hour.

- **unit accounting** (shared/DESIGN.md §1): buy one unit at the close if the cash allows; sell the
  oldest held unit (FIFO) at the close; profit = sell − buy; no fees.
- **portfolio accounting**: a buy moves ``position_step`` of the equity into the asset (up to
  ``max_position``), a sell moves it back (everything when less than half a step is left); each side
  pays ``fee_rate`` of the notional and trades at the close moved against us by ``slippage_bps``.

Rewards: ``reference`` = max(profit, 0) on a unit sell, else 0; ``log_return`` = log of the equity
change from this close to the next (net of fees); ``risk`` = ``log_return`` minus ``drawdown_penalty``
× the increase of the drawdown from the running peak.

Episodes: rows ``[start, stop]``; an action is taken at every row but the last, whose close only marks
the equity. Hours where the traded symbol's kline is missing (outages) are not tradable: any action
there is executed as hold. Training envs restart at a random row when an episode ends (``truncated``;
bootstrapping continues, the market does not end there).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from models.config import EnvConfig
from models.features import account_features

HOLD, BUY, SELL = 0, 1, 2


class StepResult(NamedTuple):
    rewards: np.ndarray  # float32 [n]
    next_rows: np.ndarray  # int64 [n] row of the next state (before any auto-reset)
    terminal: np.ndarray  # bool [n] no bootstrap (never set by the market itself; kept for the replay)
    truncated: np.ndarray  # bool [n] the episode ended at next_rows
    next_accounts: np.ndarray  # float32 [n, 3] account features at next_rows (before any auto-reset)


class VectorTradingEnv:
    """``n_envs`` trading accounts over one market (close prices and tradable flags per row)."""

    def __init__(
        self,
        close: np.ndarray,
        tradable: np.ndarray,
        config: EnvConfig,
        n_envs: int,
        start_rows: np.ndarray,
        seed: int = 0,
        auto_reset: bool = True,
        last_row: int | None = None,
    ) -> None:
        if config.accounting == "portfolio" and config.reward == "reference":
            raise ValueError("the reference reward needs unit accounting (profit per FIFO unit)")
        self.close = np.ascontiguousarray(close, dtype=np.float64)
        self.tradable = np.ascontiguousarray(tradable, dtype=bool)
        self.config, self.n_envs, self.auto_reset = config, n_envs, auto_reset
        self.start_rows = np.asarray(start_rows, dtype=np.int64)
        self.last_row = len(self.close) - 1 if last_row is None else int(last_row)
        self.rng = np.random.default_rng(seed)
        self.capacity = int(config.capital // max(float(np.nanmin(self.close)), 1e-12)) + 1
        n = n_envs
        self.rows, self.stop = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.cash, self.quantity = np.zeros(n), np.zeros(n)
        self.fifo, self.fifo_head = np.zeros((n, self.capacity)), np.zeros(n, np.int64)
        self.units = np.zeros(n, np.int64)
        self.basis = np.zeros(n)  # portfolio: quote spent on the current holdings
        self.peak, self.drawdown = np.zeros(n), np.zeros(n)
        self.realized_profit, self.fees = np.zeros(n), np.zeros(n)
        self.n_buys, self.n_sells = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self._all = np.arange(n)

    # --- episodes -------------------------------------------------------------------------------
    def reset(self, starts: np.ndarray | None = None, stops: np.ndarray | None = None) -> np.ndarray:
        """Reset every env (random starts unless given); returns the current rows."""
        self._reset(np.ones(self.n_envs, dtype=bool), starts, stops)
        return self.rows.copy()

    def _reset(self, mask: np.ndarray, starts: np.ndarray | None = None, stops: np.ndarray | None = None) -> None:
        k = int(mask.sum())
        last = self.last_row
        if starts is None:
            starts = self.rng.choice(self.start_rows, size=k)
        if stops is None:
            stops = np.minimum(np.asarray(starts) + self.config.episode_hours, last)
        self.rows[mask], self.stop[mask] = starts, stops
        self.cash[mask], self.quantity[mask] = self.config.capital, 0.0
        self.fifo_head[mask], self.units[mask], self.basis[mask] = 0, 0, 0.0
        self.peak[mask], self.drawdown[mask] = self.config.capital, 0.0
        self.realized_profit[mask], self.fees[mask] = 0.0, 0.0
        self.n_buys[mask], self.n_sells[mask] = 0, 0

    def equity(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Cash plus holdings marked at the close of ``rows`` (default: the current rows)."""
        return self.cash + self.quantity * self.close[self.rows if rows is None else rows]

    def account(self, rows: np.ndarray | None = None) -> np.ndarray:
        """float32 ``[n, 3]`` account features marked at ``rows`` (default the current rows; see
        models.features.account_features)."""
        price = self.close[self.rows if rows is None else rows]
        held = self.quantity * price
        equity = self.cash + held
        if self.config.accounting == "unit":
            oldest = self.fifo[self._all, self.fifo_head]
            entry = np.where(self.units > 0, price / np.where(self.units > 0, oldest, 1.0) - 1.0, 0.0)
            can_buy = (self.cash >= price) & (self.units < self.capacity)
        else:
            entry = np.where(self.basis > 0, held / np.where(self.basis > 0, self.basis, 1.0) - 1.0, 0.0)
            can_buy = (held < (self.config.max_position - 1e-6) * equity) & (self.cash > 1e-6 * equity)
        return account_features(held / equity, entry, can_buy)

    # --- stepping -------------------------------------------------------------------------------
    def step(self, actions: np.ndarray) -> StepResult:
        """Execute ``actions`` at the current rows' closes, move one hour on, return the rewards."""
        rows = self.rows
        price = self.close[rows]
        equity_before = self.cash + self.quantity * price
        actions = np.where(self.tradable[rows], actions, HOLD)
        if self.config.accounting == "unit":
            profit, sold = self._step_unit(actions, price)
        else:
            self._step_portfolio(actions, price, equity_before)
            profit, sold = None, None
        next_rows = rows + 1
        equity_after = self.cash + self.quantity * self.close[next_rows]
        rewards = self._rewards(equity_before, equity_after, profit, sold)
        truncated = next_rows >= self.stop
        self.rows = next_rows
        next_accounts = self.account()
        if self.auto_reset and truncated.any():
            self._reset(truncated)
        return StepResult(rewards, next_rows, np.zeros(self.n_envs, dtype=bool), truncated, next_accounts)

    def _step_unit(self, actions: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        buy = (actions == BUY) & (self.cash >= price) & (self.units < self.capacity)
        sell = (actions == SELL) & (self.units > 0)
        slot = (self.fifo_head + self.units) % self.capacity
        self.fifo[self._all[buy], slot[buy]] = price[buy]
        bought_at = self.fifo[self._all, self.fifo_head]
        profit = np.where(sell, price - bought_at, 0.0)
        self.fifo_head = np.where(sell, (self.fifo_head + 1) % self.capacity, self.fifo_head)
        delta = buy.astype(np.int64) - sell.astype(np.int64)
        self.units += delta
        self.quantity += delta
        self.cash += np.where(sell, price, 0.0) - np.where(buy, price, 0.0)
        self.realized_profit += profit
        self.n_buys += buy
        self.n_sells += sell
        return profit, sell

    def _step_portfolio(self, actions: np.ndarray, price: np.ndarray, equity: np.ndarray) -> None:
        cfg = self.config
        fee, slip = cfg.fee_rate, cfg.slippage_bps * 1e-4
        held_value = self.quantity * price
        room = np.maximum(cfg.max_position * equity - held_value, 0.0)
        spend = np.minimum(np.minimum(cfg.position_step * equity, room), self.cash / (1.0 + fee))
        buy = (actions == BUY) & (spend > 1e-9 * equity)
        spend = np.where(buy, spend, 0.0)
        step_value = cfg.position_step * equity
        sell_all = held_value - step_value < 0.5 * step_value
        sell = (actions == SELL) & (self.quantity > 0)
        sell_quantity = np.where(sell, np.where(sell_all, self.quantity, step_value / price), 0.0)
        self.basis *= np.where(sell, 1.0 - sell_quantity / np.where(sell, self.quantity, 1.0), 1.0)
        self.basis += spend
        proceeds = sell_quantity * price * (1.0 - slip)
        costs = spend * fee + proceeds * fee
        self.quantity += spend / (price * (1.0 + slip)) - sell_quantity
        self.cash += proceeds - spend - costs
        self.fees += costs
        self.n_buys += buy
        self.n_sells += sell

    def _rewards(
        self, before: np.ndarray, after: np.ndarray, profit: np.ndarray | None, sold: np.ndarray | None
    ) -> np.ndarray:
        kind = self.config.reward
        if kind == "reference":
            assert profit is not None and sold is not None
            return np.where(sold, np.maximum(profit, 0.0), 0.0).astype(np.float32)
        log_return = np.log(np.maximum(after, 1e-12) / np.maximum(before, 1e-12))
        self.peak = np.maximum(self.peak, after)
        drawdown = 1.0 - after / self.peak
        increase = np.maximum(drawdown - self.drawdown, 0.0)
        self.drawdown = drawdown
        if kind == "log_return":
            return log_return.astype(np.float32)
        return (log_return - self.config.drawdown_penalty * increase).astype(np.float32)
