"""Accounting and rewards: the trading rules, written once, for one account or an array of accounts.

Every function works on numpy arrays and broadcasts, so the vectorised environment (models/env.py,
``n`` accounts at once) and the live portfolio (streaming/portfolio.py, one account: its scalars
are 0-d arrays) apply the same arithmetic in the same order, and the paper broker fills with
:func:`market_fill`. Adding a reward kind or a sizing rule is an edit here. The rules (shared/DESIGN.md §1, §7):

- **unit accounting**: a buy is ``order_units`` units (the reference's one unit) at the close when the
  cash pays for it, fees included, and the position cap allows it; a sell closes the oldest lot
  (FIFO); profit = proceeds − cost of the lot. The environment books no fees in this accounting.
- **portfolio accounting**: a buy spends min(``position_step`` × equity, the room under
  ``max_position`` × equity, cash / (1 + fee)); a sell returns a step's worth, or everything when less
  than half a step would remain.
- **fills**: at the close moved against the trader by ``slippage_bps``; the fee is ``fee_rate`` of the
  notional (a buy's spend, a sell's proceeds).
- **turnover rules**: exposure moves by ``position_step`` per buy or sell (``position_step`` 0.5 gives
  the target exposures {0, ½, 1}, 1.0 gives {0, 1}, with the same three actions); a buy or sell within
  ``min_hold_hours`` of the last trade (a fill) executes as hold (:func:`executed_actions`), as does
  any action at an hour that is not tradable.
- **account features** (:func:`models.features.account_features`): exposure = held value / equity;
  the return since entry of what the next sell closes; whether a buy would execute (cash, cap and the
  minimum holding time).
- **rewards**: ``reference`` = max(realised profit, 0) (the profit is 0 except on a unit sell);
  ``log_return`` = log(equity after / equity before); ``risk`` = ``log_return`` − ``drawdown_penalty``
  × the increase of the drawdown from the running peak; both minus ``turnover_penalty`` × the traded
  notional / the equity before the trade (:func:`step_reward`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from models.config import ACCOUNTINGS, REWARD_KINDS, EnvConfig
from models.features import account_features

HOLD, BUY, SELL = 0, 1, 2
SELL_ALL_BELOW = 0.5
"""Portfolio accounting: a sell closes the position when less than this many steps would remain."""
NEVER_TRADED = 1 << 40
"""Hours since the last trade of an account that never traded (no minimum holding time applies)."""
TURNOVER_RULES = ("position_step", "max_position", "min_hold_hours")
"""The EnvConfig fields that say how a policy trades (not what it pays): a backtest of a policy keeps them."""

#: A float or a float64 array (one entry per account); results have the broadcast shape. ``Any`` because
#: numpy's stubs cannot type the mixed float / array operators these functions are written with.
Amount = Any


class Fills(NamedTuple):
    """What the accounts traded in one step (one entry per account)."""

    quantity: np.ndarray  # float64: base units bought (> 0) or sold (< 0); 0 = nothing filled
    price: np.ndarray  # float64: fill price (the close moved by the slippage; the close when nothing filled)
    fee: np.ndarray  # float64: fee paid in the quote asset


@dataclass(frozen=True)
class TradingRules:
    """The rules a live account trades by: the policy's training :class:`EnvConfig` (accounting, reward,
    position step and cap, drawdown penalty) with the trader's fee and slippage, plus unit accounting's
    order size and position cap (the risk limit)."""

    env: EnvConfig
    order_units: float
    """Unit accounting: base units per buy."""
    max_units: float
    """Unit accounting: largest position in base units (a buy above it does not execute)."""


def check_rules(config: EnvConfig) -> None:
    """Raise ValueError for an accounting or reward this module does not know, or a pair that cannot work."""
    if config.accounting not in ACCOUNTINGS or config.reward not in REWARD_KINDS:
        raise ValueError(f"unsupported accounting {config.accounting!r} or reward {config.reward!r}")
    if config.accounting == "portfolio" and config.reward == "reference":
        raise ValueError("the reference reward needs unit accounting (profit per FIFO unit)")
    if not 0.0 < config.position_step <= config.max_position <= 1.0:
        step, cap = config.position_step, config.max_position
        raise ValueError(f"need 0 < position_step ({step}) <= max_position ({cap}) <= 1")
    if config.min_hold_hours < 0 or config.turnover_penalty < 0.0:
        raise ValueError(f"min_hold_hours ({config.min_hold_hours}) and turnover_penalty "
                         f"({config.turnover_penalty}) must be >= 0")  # fmt: skip
    if config.turnover_penalty and config.reward == "reference":
        raise ValueError("the turnover penalty needs the log_return or risk reward (a fraction of equity)")


# --- turnover rules ---------------------------------------------------------------------------------
def with_turnover_rules(config: EnvConfig, trained: EnvConfig) -> EnvConfig:
    """``config`` (a backtest's accounting, fees and slippage) trading by the :data:`TURNOVER_RULES` of
    ``trained`` (the policy's training rules), so a policy is always judged trading as it was trained."""
    return replace(config, **{name: getattr(trained, name) for name in TURNOVER_RULES})


def trade_allowed(hours_since_trade: Amount, min_hold_hours: int) -> Amount:
    """Whether a buy or sell may execute ``hours_since_trade`` hours after the account's last fill."""
    return np.asarray(hours_since_trade) >= min_hold_hours


def executed_actions(actions: Amount, tradable: Amount, hours_since_trade: Amount, min_hold_hours: int) -> Amount:
    """The actions as executed: hold where the hour is not tradable or the last trade is too recent."""
    return np.where(np.asarray(tradable) & trade_allowed(hours_since_trade, min_hold_hours), actions, HOLD)


def turnover(notional: Amount, equity: Amount) -> Amount:
    """Traded notional as a fraction of the equity before the trade (the turnover penalty's measure)."""
    return notional / np.maximum(equity, 1e-12)


# --- fills and fees ---------------------------------------------------------------------------------
def buy_price(price: Amount, slippage_bps: float) -> Amount:
    """The price a buy fills at: the close moved up by the slippage."""
    return price * (1.0 + slippage_bps * 1e-4)


def sell_price(price: Amount, slippage_bps: float) -> Amount:
    """The price a sell fills at: the close moved down by the slippage."""
    return price * (1.0 - slippage_bps * 1e-4)


def sell_proceeds(quantity: Amount, price: Amount, slippage_bps: float) -> Amount:
    """Quote received for selling ``quantity`` at the close ``price`` (before the fee)."""
    return quantity * price * (1.0 - slippage_bps * 1e-4)


def fee(notional: Amount, fee_rate: float) -> Amount:
    """The fee of a trade worth ``notional`` in the quote asset."""
    return notional * fee_rate


def market_fill(side: str, quantity: float, price: float, fee_rate: float, slippage_bps: float) -> tuple[float, float]:
    """(fill price, fee) of a MARKET order for ``quantity`` decided at the close ``price``."""
    if side == "BUY":
        at = buy_price(price, slippage_bps)
        return at, fee(quantity * at, fee_rate)
    return sell_price(price, slippage_bps), fee(sell_proceeds(quantity, price, slippage_bps), fee_rate)


# --- sizing -----------------------------------------------------------------------------------------
def holds(quantity: Amount) -> Amount:
    """Whether the account holds anything to sell."""
    return quantity > 0


def unit_can_buy(
    cash: Amount, quantity: Amount, price: Amount, order_units: float, fee_rate: float, max_units: float
) -> Amount:
    """Unit accounting: the cash pays for ``order_units`` at ``price`` with the fee, and the cap allows them."""
    return (cash >= price * order_units * (1.0 + fee_rate)) & (quantity + order_units <= max_units + 1e-9)


def unit_sell_quantity(quantity: Amount, oldest_lot: Amount) -> Amount:
    """Unit accounting: a sell closes the oldest lot (FIFO), never more than is held."""
    return np.where(holds(quantity), np.minimum(oldest_lot, quantity), 0.0)


def portfolio_buy_spend(
    cash: Amount, held_value: Amount, equity: Amount, position_step: float, max_position: float, fee_rate: float
) -> Amount:
    """Portfolio accounting: the quote a buy spends (before its fee); 0.0 where the buy would not execute."""
    room = np.maximum(max_position * equity - held_value, 0.0)
    spend = np.minimum(np.minimum(position_step * equity, room), cash / (1.0 + fee_rate))
    return np.where(spend > 1e-9 * equity, spend, 0.0)


def portfolio_sell_quantity(
    quantity: Amount, held_value: Amount, equity: Amount, price: Amount, position_step: float
) -> Amount:
    """Portfolio accounting: base units a sell returns: a step's worth, or everything when less than
    :data:`SELL_ALL_BELOW` of a step would remain."""
    step_value = position_step * equity
    return np.where(held_value - step_value < SELL_ALL_BELOW * step_value, quantity, step_value / price)


def portfolio_can_buy(cash: Amount, held_value: Amount, equity: Amount, max_position: float) -> Amount:
    """Portfolio accounting: the position is under its cap and cash is left."""
    return (held_value < (max_position - 1e-6) * equity) & (cash > 1e-6 * equity)


def remaining_fraction(sold: Amount, quantity: Amount, selling: Amount) -> Amount:
    """The fraction of the position (and of its cost basis) left after selling ``sold`` of ``quantity``."""
    return np.where(selling, 1.0 - sold / np.where(selling, quantity, 1.0), 1.0)


# --- account features -------------------------------------------------------------------------------
def entry_return(value: Amount, paid: Amount, holding: Amount) -> Amount:
    """``value / paid − 1`` where ``holding``, else 0."""
    return np.where(holding, value / np.where(holding, paid, 1.0) - 1.0, 0.0)


def unit_account(
    cash: Amount, quantity: Amount, price: Amount, oldest_price: Amount, order_units: float, fee_rate: float,
    max_units: float, allowed: Amount = True,
) -> np.ndarray:  # fmt: skip
    """float32 ``[..., 3]`` account features in unit accounting (``oldest_price``: the oldest lot's price;
    ``allowed``: :func:`trade_allowed` now)."""
    held = quantity * price
    equity = cash + held
    entry = entry_return(price, oldest_price, holds(quantity) & (oldest_price > 0))
    can_buy = unit_can_buy(cash, quantity, price, order_units, fee_rate, max_units) & allowed
    return account_features(held / equity, entry, can_buy)


def portfolio_account(
    cash: Amount, quantity: Amount, basis: Amount, price: Amount, max_position: float, allowed: Amount = True
) -> np.ndarray:
    """float32 ``[..., 3]`` account features in portfolio accounting (``basis``: quote paid for the holdings;
    ``allowed``: :func:`trade_allowed` now)."""
    held = quantity * price
    equity = cash + held
    entry = entry_return(held, basis, basis > 0)
    return account_features(held / equity, entry, portfolio_can_buy(cash, held, equity, max_position) & allowed)


# --- rewards ----------------------------------------------------------------------------------------
def log_return(before: Amount, after: Amount) -> Amount:
    return np.log(np.maximum(after, 1e-12) / np.maximum(before, 1e-12))


def drawdown_step(peak: Amount, drawdown: Amount, equity: Amount) -> tuple[Amount, Amount, Amount]:
    """(new peak, new drawdown, increase of the drawdown) after marking ``equity``."""
    peak = np.maximum(peak, equity)
    new = 1.0 - equity / peak
    return peak, new, np.maximum(new - drawdown, 0.0)


def step_reward(
    config: EnvConfig, profit: Amount, before: Amount, after: Amount, peak: Amount, drawdown: Amount,
    traded: Amount = 0.0,
) -> tuple[Amount, Amount, Amount]:  # fmt: skip
    """(reward as float64, new peak, new drawdown) of one step of ``config.reward`` from equity ``before``
    (at the decision's close) to ``after`` (at the next close); ``profit`` is the realised profit of
    the step (0 unless a unit was sold), ``traded`` the step's :func:`turnover`. The reference reward
    leaves the peak and drawdown as they are."""
    kind = config.reward
    if kind == "reference":
        return np.maximum(profit, 0.0), peak, drawdown
    change = log_return(before, after) - config.turnover_penalty * traded
    peak, drawdown, increase = drawdown_step(peak, drawdown, after)
    if kind == "log_return":
        return change, peak, drawdown
    if kind == "risk":
        return change - config.drawdown_penalty * increase, peak, drawdown
    raise ValueError(f"unknown reward {kind!r}; choose one of {REWARD_KINDS}")
