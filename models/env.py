"""A vectorised trading environment: many copies stepped at once on preallocated numpy arrays.

Observations are *row indices* into the feature table (the state of the reference system depends on
the market only, not on the position), so the replay stores indices and the agent gathers windows.

Actions: 0 hold, 1 buy, 2 sell, executed at the close of the current hour.

The rules (sizing, fills, fees, account features, rewards) are models/accounting.py's, shared with
the live portfolio; this module keeps the accounts' state and the FIFO lots of unit accounting:

- **unit accounting** (shared/DESIGN.md §1): buy one unit at the close if the cash allows; sell the
  oldest held unit (FIFO) at the close; profit = sell − buy; no fees.
- **portfolio accounting**: a buy moves ``position_step`` of the equity into the asset (up to
  ``max_position``), a sell moves it back (everything when less than half a step is left); each side
  pays ``fee_rate`` of the notional and trades at the close moved against us by ``slippage_bps``.

Rewards: ``reference`` = max(profit, 0) on a unit sell, else 0; ``log_return`` = log of the equity
change from this close to the next (net of fees); ``risk`` = ``log_return`` minus ``drawdown_penalty``
× the increase of the drawdown from the running peak.

Turnover rules (models/accounting.py): ``position_step`` sets the exposure levels; a buy or sell
within ``min_hold_hours`` of the env's last fill executes as hold; ``turnover_penalty`` charges the
log_return / risk rewards for the traded notional.

Episodes: rows ``[start, stop]``; an action is taken at every row but the last, whose close only marks
the equity. Hours where the traded symbol's kline is missing (outages) are not tradable: any action
there is executed as hold. Training envs restart at a random row when an episode ends (``truncated``;
bootstrapping continues, the market does not end there).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from models.accounting import (
    BUY,
    HOLD,
    NEVER_TRADED,
    SELL,
    Fills,
    buy_price,
    check_rules,
    executed_actions,
    fee,
    holds,
    portfolio_account,
    portfolio_buy_spend,
    portfolio_sell_quantity,
    remaining_fraction,
    sell_price,
    sell_proceeds,
    step_reward,
    trade_allowed,
    turnover,
    unit_account,
    unit_can_buy,
)
from models.config import EnvConfig

__all__ = ["BUY", "HOLD", "SELL", "StepResult", "VectorTradingEnv"]


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
        check_rules(config)
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
        self.last_trade = np.full(n, -NEVER_TRADED, np.int64)  # row of each env's last fill
        self.last_fills = Fills(np.zeros(n), np.zeros(n), np.zeros(n))
        """What each env traded in the latest step."""
        self.last_actions = np.zeros(n, np.int64)
        """The latest step's actions as executed (hold where not tradable or within the minimum holding time)."""
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
        self.last_trade[mask] = -NEVER_TRADED

    def equity(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Cash plus holdings marked at the close of ``rows`` (default: the current rows)."""
        return self.cash + self.quantity * self.close[self.rows if rows is None else rows]

    def account(self, rows: np.ndarray | None = None) -> np.ndarray:
        """float32 ``[n, 3]`` account features marked at ``rows`` (default the current rows; see
        models.features.account_features)."""
        rows = self.rows if rows is None else rows
        price = self.close[rows]
        allowed = trade_allowed(rows - self.last_trade, self.config.min_hold_hours)
        if self.config.accounting == "unit":
            oldest = self.fifo[self._all, self.fifo_head]
            return unit_account(self.cash, self.quantity, price, oldest, 1.0, 0.0, self.capacity, allowed)
        return portfolio_account(self.cash, self.quantity, self.basis, price, self.config.max_position, allowed)

    # --- stepping -------------------------------------------------------------------------------
    def step(self, actions: np.ndarray) -> StepResult:
        """Execute ``actions`` at the current rows' closes, move one hour on, return the rewards."""
        rows = self.rows
        price = self.close[rows]
        equity_before = self.cash + self.quantity * price
        actions = executed_actions(actions, self.tradable[rows], rows - self.last_trade, self.config.min_hold_hours)
        self.last_actions = actions
        profit: np.ndarray | float = 0.0  # realised profit: unit accounting's sells only
        if self.config.accounting == "unit":
            profit = self._step_unit(actions, price)
        else:
            self._step_portfolio(actions, price, equity_before)
        fills = self.last_fills
        self.last_trade = np.where(fills.quantity != 0.0, rows, self.last_trade)
        next_rows = rows + 1
        equity_after = self.cash + self.quantity * self.close[next_rows]
        traded = turnover(np.abs(fills.quantity) * fills.price, equity_before)
        reward, self.peak, self.drawdown = step_reward(
            self.config, profit, equity_before, equity_after, self.peak, self.drawdown, traded
        )
        rewards = reward.astype(np.float32)
        truncated = next_rows >= self.stop
        self.rows = next_rows
        next_accounts = self.account()
        if self.auto_reset and truncated.any():
            self._reset(truncated)
        return StepResult(rewards, next_rows, np.zeros(self.n_envs, dtype=bool), truncated, next_accounts)

    def _step_unit(self, actions: np.ndarray, price: np.ndarray) -> np.ndarray:
        """One unit bought or the oldest unit sold (FIFO ring per env); returns the realised profits."""
        buy = (actions == BUY) & unit_can_buy(self.cash, self.quantity, price, 1.0, 0.0, self.capacity)
        sell = (actions == SELL) & holds(self.units)
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
        self.last_fills = Fills(delta.astype(np.float64), price, np.zeros(self.n_envs))
        return profit

    def _step_portfolio(self, actions: np.ndarray, price: np.ndarray, equity: np.ndarray) -> None:
        cfg = self.config
        held_value = self.quantity * price
        spend = portfolio_buy_spend(self.cash, held_value, equity, cfg.position_step, cfg.max_position, cfg.fee_rate)
        buy = (actions == BUY) & (spend > 0.0)
        spend = np.where(buy, spend, 0.0)
        sell = (actions == SELL) & holds(self.quantity)
        sell_quantity = np.where(
            sell, portfolio_sell_quantity(self.quantity, held_value, equity, price, cfg.position_step), 0.0
        )
        self.basis *= remaining_fraction(sell_quantity, self.quantity, sell)
        self.basis += spend
        proceeds = sell_proceeds(sell_quantity, price, cfg.slippage_bps)
        costs = fee(spend, cfg.fee_rate) + fee(proceeds, cfg.fee_rate)
        paid = buy_price(price, cfg.slippage_bps)
        traded = spend / paid - sell_quantity
        self.quantity += traded
        self.cash += proceeds - spend - costs
        self.fees += costs
        self.n_buys += buy
        self.n_sells += sell
        fill_price = np.where(buy, paid, np.where(sell, sell_price(price, cfg.slippage_bps), price))
        self.last_fills = Fills(traded, fill_price, costs)
