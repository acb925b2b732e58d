"""What may become an order, and the pre-trade risk checks: kill switch, daily-loss stop, maximum position,
maximum order notional, cash.

First :func:`not_executable`: a sell with nothing held (``no_position``) or a buy with no room
(``no_room``) is not an order at all but a decision to do nothing; the trader records the decision with
``order_status`` ``not_executable`` and the reason, and writes no order row. Then :func:`check_order`, a pure
function of the limits, the order and the account marked at the decision's close, so a replayed
micro-batch takes the same risk decisions. An order that fails a check is never sent; the trader records
it as ``rejected`` with the reason.

- **Kill switch** (setting ``KLINESTREAM_KILL_SWITCH`` or an operator control, see
  :class:`~models.ports.Controls`):
  no new order at all, from the hour it is seen on; decisions go on being recorded.
- **Daily-loss stop:** once the equity of the current UTC day (of the decision hour, so replays
  agree) has fallen ``daily_loss_limit`` below its value at the day's first decision, no order that
  adds to the position (buys) until the next UTC day; sells, which reduce risk, stay allowed.
- **Max position:** a buy that would hold more than ``max_position_units`` base units is refused.
- **Max order notional:** a buy worth more than ``max_order_notional`` is refused (sells only reduce
  the position, and a stop must never keep the trader from getting out).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from models.ports import Controls
from models.records import NO_POSITION, NO_ROOM
from models.settings import Settings

KILL_SWITCH = "kill_switch"
DAILY_LOSS = "daily_loss_limit"
MAX_POSITION = "max_position"
MAX_NOTIONAL = "max_order_notional"
INSUFFICIENT_CASH = "insufficient_cash"
#: The reasons :func:`check_order` gives: a real order refused.
REJECTION_REASONS = (KILL_SWITCH, DAILY_LOSS, MAX_POSITION, MAX_NOTIONAL, INSUFFICIENT_CASH)
_EPS = 1e-9


@dataclass(frozen=True)
class RiskLimits:
    max_position_units: float
    max_order_notional: float
    daily_loss_limit: float
    kill_switch: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RiskLimits:
        return cls(
            settings.max_position_units, settings.max_order_notional, settings.daily_loss_limit, settings.kill_switch
        )


@dataclass(frozen=True)
class AccountView:
    """The account at the decision's close, before the order."""

    units: float
    cash: float
    equity: float
    day_start_equity: float


def not_executable(side: str, quantity: float, units: float) -> str | None:
    """Why the action cannot become an order (``no_position``, ``no_room``), or None when it is an order.

    ``quantity`` is what the accounting would trade (streaming.portfolio.Portfolio.order_quantity), ``units``
    what is held."""
    if side == "SELL":
        return NO_POSITION if units <= _EPS or quantity <= _EPS else None
    return NO_ROOM if quantity <= _EPS else None  # portfolio accounting: at the maximum fraction, or no cash


def check_order(
    limits: RiskLimits, side: str, quantity: float, price: float, account: AccountView, killed: bool, fee_rate: float
) -> str | None:
    """The reason to refuse an executable order (see :func:`not_executable`), or None when it may be sent."""
    if killed or limits.kill_switch:
        return KILL_SWITCH
    if side == "SELL":
        return None  # sells only reduce the position: no limit keeps the trader from getting out
    if account.day_start_equity - account.equity >= limits.daily_loss_limit:
        return DAILY_LOSS
    if quantity * price > limits.max_order_notional + _EPS:
        return MAX_NOTIONAL
    if account.units + quantity > limits.max_position_units + _EPS:
        return MAX_POSITION
    if quantity * price * (1.0 + fee_rate) > account.cash + _EPS:
        return INSUFFICIENT_CASH
    return None


class NoControls:
    """No control channel: only the ``kill_switch`` setting stops orders."""

    def kill_switch_active(self) -> bool:
        return False


class CachedKillSwitch:
    """Reads a :class:`Controls` at most every ``ttl_seconds`` (0 = on every call)."""

    def __init__(self, controls: Controls, ttl_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.controls, self.ttl, self.clock = controls, ttl_seconds, clock
        self._value, self._read_at = False, float("-inf")

    def active(self) -> bool:
        now = self.clock()
        if self.ttl <= 0 or now - self._read_at >= self.ttl:
            self._value, self._read_at = bool(self.controls.kill_switch_active()), now
        return self._value
