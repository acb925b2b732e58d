"""The online trader's account of its traded symbol: units, cash, FIFO lots, fees, day start, buy-and-hold.

Updated only from broker fills, so it is what the trader really did (fees and slippage included).
Order sizes and the account features of the state follow the accounting the policy was trained
with (``env_config`` in the policy metadata; models/env.py), so that with zero fees the trader's
account, and therefore its state, is the backtest environment's:

- ``unit``: a buy is ``order_units`` units (the reference's one unit); a sell closes the oldest lot
  (FIFO); realised profit = proceeds − cost of the lot, fees included.
- ``portfolio``: a buy spends ``position_step`` of the equity (up to ``max_position`` of it); a sell
  returns a step (everything when less than half a step would remain).

The buy-and-hold benchmark invests the starting capital at the first close the trader sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.features import account_features

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Sizing:
    accounting: str = "unit"
    order_units: float = 1.0
    position_step: float = 0.2
    max_position: float = 1.0
    fee_rate: float = 0.0
    slippage_bps: float = 0.0
    max_position_units: float = float("inf")


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

    def order_quantity(self, side: str, price: float, sizing: Sizing) -> float:
        """Base units of the order ``side`` would send now (0.0 = nothing to trade)."""
        if side == "SELL":
            if self.units <= 1e-12:
                return 0.0
            if sizing.accounting == "unit":
                return min(self.lots[0][0] if self.lots else self.units, self.units)
            step_value = sizing.position_step * self.equity(price)
            held = self.units * price
            return self.units if held - step_value < 0.5 * step_value else step_value / price
        if sizing.accounting == "unit":
            return sizing.order_units
        equity = self.equity(price)
        room = max(sizing.max_position * equity - self.units * price, 0.0)
        spend = min(sizing.position_step * equity, room, self.cash / (1.0 + sizing.fee_rate))
        return spend / (price * (1.0 + sizing.slippage_bps * 1e-4)) if spend > 1e-9 * equity else 0.0

    def account(self, price: float, sizing: Sizing) -> np.ndarray:
        """float32 ``[3]`` account features (models.features.account_features) marked at ``price``."""
        held, equity = self.units * price, self.equity(price)
        if sizing.accounting == "unit":
            entry = price / self.lots[0][1] - 1.0 if self.units > 1e-12 and self.lots else 0.0
            cost = price * sizing.order_units * (1.0 + sizing.fee_rate)
            can_buy = self.cash >= cost and self.units + sizing.order_units <= sizing.max_position_units + 1e-9
        else:
            entry = held / self.basis - 1.0 if self.basis > 0 else 0.0
            can_buy = held < (sizing.max_position - 1e-6) * equity and self.cash > 1e-6 * equity
        return account_features(np.array(held / equity), np.array(entry), np.array(can_buy))

    def apply_fill(self, side: str, quantity: float, price: float, fee: float) -> float:
        """Book a fill; returns the realised profit (sells; 0.0 for buys)."""
        if quantity <= 0:
            return 0.0
        self.fees_paid += fee
        if side == "BUY":
            self.units += quantity
            self.cash -= quantity * price + fee
            self.basis += quantity * price
            self.lots.append((quantity, price, fee / quantity))
            return 0.0
        quantity = min(quantity, self.units)
        self.basis *= 1.0 - quantity / self.units
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

    def drawdown_increase(self, equity: float) -> float:
        """Move the running peak and drawdown to ``equity``; returns the increase of the drawdown."""
        self.peak = max(self.peak, equity)
        drawdown = 1.0 - equity / self.peak if self.peak > 0 else 0.0
        increase = max(drawdown - self.drawdown, 0.0)
        self.drawdown = drawdown
        return increase

    def to_dict(self) -> dict[str, Any]:
        return {
            "capital": self.capital, "units": self.units, "cash": self.cash,
            "lots": [list(lot) for lot in self.lots], "basis": self.basis, "realized_pnl": self.realized_pnl,
            "fees_paid": self.fees_paid, "day": self.day, "day_start_equity": self.day_start_equity,
            "buy_hold_units": self.buy_hold_units, "peak": self.peak, "drawdown": self.drawdown,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Portfolio:
        floats = {k: float(data[k]) for k in ("capital", "units", "cash", "basis", "realized_pnl", "fees_paid",
                                              "day_start_equity", "buy_hold_units", "peak", "drawdown")}  # fmt: skip
        lots = [(float(u), float(p), float(f)) for u, p, f in data["lots"]]
        return cls(lots=lots, day=int(data["day"]), **floats)
