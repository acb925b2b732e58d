"""The online trader's account of its traded symbol: units, cash, FIFO lots, fees, day start, buy-and-hold.

Updated only from broker fills, so it is what the trader really did (fees and slippage included).
Order sizes, account features and rewards follow the rules the policy was trained with
(:class:`~models.accounting.TradingRules`: the ``env_config`` of the policy metadata with the
trader's fees), computed by models/accounting.py like the backtest environment's, so that with zero
fees the trader's account, and therefore its state, is the environment's:

- ``unit``: a buy is ``order_units`` units (the reference's one unit); a sell closes the oldest lot
  (FIFO); realised profit = proceeds − cost of the lot, fees included.
- ``portfolio``: a buy spends ``position_step`` of the equity (up to ``max_position`` of it); a sell
  returns a step (everything when less than half a step would remain).

Turnover rules: the hour of the last fill is kept (and checkpointed), so a buy or sell within the
policy's ``min_hold_hours`` executes as hold (:meth:`Portfolio.executed_action`), as in the environment.

The buy-and-hold benchmark invests the starting capital at the first close the trader sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.accounting import (
    NEVER_TRADED,
    TradingRules,
    buy_price,
    executed_actions,
    holds,
    portfolio_account,
    portfolio_buy_spend,
    portfolio_sell_quantity,
    remaining_fraction,
    step_reward,
    trade_allowed,
    turnover,
    unit_account,
    unit_sell_quantity,
)
from models.kline import HOUR_MS

DAY_MS = 86_400_000


@dataclass
class Portfolio:
    capital: float
    units: float = 0.0
    cash: float = 0.0
    lots: list[tuple[float, float, float]] = field(default_factory=list)
    """Open FIFO lots: (units, fill price, buy fee per unit)."""
    basis: float = 0.0
    """Quote spent (before fees) on what is held, reduced pro rata by sells (portfolio accounting)."""
    realized_pnl: float = 0.0
    fees_paid: float = 0.0
    day: int = -1
    day_start_equity: float = 0.0
    buy_hold_units: float = 0.0
    peak: float = 0.0
    drawdown: float = 0.0
    last_trade_hour: int | None = None
    """open_time (ms) of the hour of the last fill (the minimum holding time counts from it); None = never."""

    @classmethod
    def start(cls, capital: float) -> Portfolio:
        """A fresh account holding ``capital`` in cash."""
        return cls(capital=capital, cash=capital, peak=capital)

    def equity(self, price: float) -> float:
        return self.cash + self.units * price

    def buy_hold_equity(self, price: float) -> float:
        return self.buy_hold_units * price if self.buy_hold_units > 0 else self.capital

    def mark(self, open_time: int, price: float) -> None:
        """Start of an hour at its close: the first hour of a UTC day fixes the day's starting equity."""
        if self.buy_hold_units == 0.0 and price > 0:
            self.buy_hold_units = self.capital / price
        day = open_time // DAY_MS
        if day != self.day:
            self.day, self.day_start_equity = day, self.equity(price)

    def hours_since_trade(self, open_time: int) -> int:
        """Hours from the last fill to the hour ``open_time`` (:data:`NEVER_TRADED` before the first)."""
        return NEVER_TRADED if self.last_trade_hour is None else (open_time - self.last_trade_hour) // HOUR_MS

    def executed_action(self, action: int, tradable: bool, open_time: int, rules: TradingRules) -> int:
        """``action`` as executed at ``open_time``: hold when not tradable or within the minimum holding time."""
        since = self.hours_since_trade(open_time)
        return int(executed_actions(action, tradable, since, rules.env.min_hold_hours))

    def order_quantity(self, side: str, price: float, rules: TradingRules) -> float:
        """Base units of the order ``side`` would send now (0.0 = nothing to trade)."""
        env = rules.env
        if side == "SELL":
            if env.accounting == "unit":
                return float(unit_sell_quantity(self.units, self.lots[0][0] if self.lots else self.units))
            sell = portfolio_sell_quantity(self.units, self.units * price, self.equity(price), price, env.position_step)
            return float(np.where(holds(self.units), sell, 0.0))
        if env.accounting == "unit":
            return rules.order_units
        equity = self.equity(price)
        spend = portfolio_buy_spend(self.cash, self.units * price, equity, env.position_step, env.max_position,
                                    env.fee_rate)  # fmt: skip
        return float(spend / buy_price(price, env.slippage_bps)) if spend > 0 else 0.0

    def account(self, price: float, rules: TradingRules, open_time: int | None = None) -> np.ndarray:
        """float32 ``[3]`` account features (models.features.account_features) marked at ``price`` at the
        hour ``open_time`` (None: as if no minimum holding time applied)."""
        since = NEVER_TRADED if open_time is None else self.hours_since_trade(open_time)
        allowed = trade_allowed(since, rules.env.min_hold_hours)
        if rules.env.accounting == "unit":
            oldest = self.lots[0][1] if self.lots else 0.0
            return unit_account(self.cash, self.units, price, oldest, rules.order_units, rules.env.fee_rate,
                                rules.max_units, allowed)  # fmt: skip
        return portfolio_account(self.cash, self.units, self.basis, price, rules.env.max_position, allowed)

    def apply_fill(self, side: str, quantity: float, price: float, fee: float, open_time: int | None = None) -> float:
        """Book a fill decided at the hour ``open_time`` (the last trade, for the minimum holding time);
        returns the realised profit (sells; 0.0 for buys)."""
        if quantity <= 0:
            return 0.0
        if open_time is not None:
            self.last_trade_hour = open_time
        self.fees_paid += fee
        if side == "BUY":
            self.units += quantity
            self.cash -= quantity * price + fee
            self.basis += quantity * price
            self.lots.append((quantity, price, fee / quantity))
            return 0.0
        quantity = min(quantity, self.units)
        self.basis *= float(remaining_fraction(quantity, self.units, True))
        cost, left = 0.0, quantity
        while left > 1e-12 and self.lots:
            lot_units, lot_price, lot_fee = self.lots[0]
            take = min(lot_units, left)
            cost += take * (lot_price + lot_fee)
            left -= take
            if lot_units - take <= 1e-12:
                self.lots.pop(0)
            else:
                self.lots[0] = (lot_units - take, lot_price, lot_fee)
        self.units -= quantity
        proceeds = quantity * price - fee
        self.cash += proceeds
        profit = proceeds - cost
        self.realized_pnl += profit
        return profit

    def reward(self, rules: TradingRules, profit: float, equity_before: float, equity_now: float,
               notional: float = 0.0) -> float:  # fmt: skip
        """The reward of the step from ``equity_before`` (a decision's close, before its order) to
        ``equity_now`` (the next close) that realised ``profit`` and traded ``notional`` (quantity × fill
        price); moves the running peak and drawdown."""
        traded = turnover(notional, equity_before)
        reward, peak, drawdown = step_reward(rules.env, profit, equity_before, equity_now, self.peak, self.drawdown,
                                             traded)  # fmt: skip
        self.peak, self.drawdown = float(peak), float(drawdown)
        return float(reward)

    def to_dict(self) -> dict[str, Any]:
        return {
            "capital": self.capital, "units": self.units, "cash": self.cash,
            "lots": [list(lot) for lot in self.lots], "basis": self.basis, "realized_pnl": self.realized_pnl,
            "fees_paid": self.fees_paid, "day": self.day, "day_start_equity": self.day_start_equity,
            "buy_hold_units": self.buy_hold_units, "peak": self.peak, "drawdown": self.drawdown,
            "last_trade_hour": self.last_trade_hour,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Portfolio:
        floats = {k: float(data[k]) for k in ("capital", "units", "cash", "basis", "realized_pnl", "fees_paid",
                                              "day_start_equity", "buy_hold_units", "peak", "drawdown")}  # fmt: skip
        lots = [(float(u), float(p), float(f)) for u, p, f in data["lots"]]
        last = data.get("last_trade_hour")  # absent in checkpoints written before the minimum holding time
        return cls(lots=lots, day=int(data["day"]), last_trade_hour=None if last is None else int(last), **floats)
