"""What the online trader writes: one decision, order and position row per trader, symbol and hour.

Every record is keyed by data (trader id, symbol, decision hour, model version), never by a random
id or the wall clock, so a replayed micro-batch produces the same keys and its writes are upserts of
the same rows (docs/architecture.md, "Deterministic keys").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.kline import HOUR_MS

ACTION_NAMES = ("hold", "buy", "sell")
SIDES = {1: "BUY", 2: "SELL"}

#: ``order_status`` of a decision whose action could not become an order: nothing to sell, no room to buy, or
#: the policy's minimum holding time since the last trade. It is a decision to do nothing, not an order: no
#: order row, no client order id, the recorded action is hold; ``order_reason`` says why.
NOT_EXECUTABLE = "not_executable"
NO_POSITION = "no_position"
"""A sell with nothing held."""
NO_ROOM = "no_room"
"""A buy with no room left (portfolio accounting: the position is at its maximum fraction, or no cash is left)."""
MIN_HOLD = "min_hold"
"""A buy or sell within the policy's ``min_hold_hours`` of the last trade (models/accounting.py): held instead."""
NOT_EXECUTABLE_REASONS = (NO_POSITION, NO_ROOM, MIN_HOLD)

#: Binance accepts client order ids matching ``^[.A-Z:/a-z0-9_-]{1,36}$``.
CLIENT_ORDER_ID_PREFIX = "ks"


def client_order_id(trader_id: str, model_version: str, symbol: str, open_time: int) -> str:
    """Deterministic Binance ``newClientOrderId`` of the order decided at ``open_time``.

    ``ks-<hour number>-<20 hex digits of a BLAKE2b digest of trader, version, symbol and hour>``
    (at most 31 characters): readable enough to find by hour, unique per trader, model version,
    symbol and hour, and identical when a replayed micro-batch re-sends the same decision.
    """
    if open_time % HOUR_MS:
        raise ValueError(f"open_time {open_time} is not on an hour boundary")
    key = f"{trader_id}|{model_version}|{symbol}|{open_time}".encode()
    digest = hashlib.blake2b(key, digest_size=10).hexdigest()
    return f"{CLIENT_ORDER_ID_PREFIX}-{open_time // HOUR_MS}-{digest}"


@dataclass(frozen=True)
class DecisionRecord:
    """One decision of a trader at the close of the hour ``open_time``."""

    trader_id: str
    symbol: str
    open_time: int
    model_version: str
    action: int
    """0 hold, 1 buy, 2 sell (after exploration; forced to hold where the hour is not tradable)."""
    greedy_action: int
    """The target network's argmax (what the offline backtest of the same weights would do)."""
    q_hold: float
    q_buy: float
    q_sell: float
    price: float
    epsilon: float
    explored: bool
    online_updates: int
    degraded: bool
    """Some context symbol's kline of that hour was missing (gap-filled by the feature transform)."""
    tradable: bool
    batch_id: int
    client_order_id: str | None
    order_status: str | None
    """The status of the decision's order (``filled``, ``failed``, ``rejected``); :data:`NOT_EXECUTABLE` when the
    action could not become an order (a trade the minimum holding time turned into hold included); None for a
    hold."""
    swapped_from: str | None = None
    """Set on the first decision after a hot swap: the model version traded before."""
    order_reason: str | None = None
    """Why: the risk check that rejected the order, the exchange's reason for a failure, or a
    :data:`NOT_EXECUTABLE_REASONS` entry; None when the order was filled or there was none."""

    @property
    def action_name(self) -> str:
        return ACTION_NAMES[self.action]


@dataclass(frozen=True)
class OrderRecord:
    """An order the trader decided on: filled by the broker, or rejected before it was sent."""

    trader_id: str
    symbol: str
    open_time: int
    client_order_id: str
    model_version: str
    side: str
    quantity: float
    """Requested quantity in base units."""
    price: float
    """The close the decision saw (the reference price of the order)."""
    status: str
    """``filled``, ``rejected`` (a risk check refused it, never sent; see ``reason``) or ``failed`` (the exchange
    refused it). A decision that could not be an order (:data:`NOT_EXECUTABLE`) has no order row."""
    reason: str | None
    filled_quantity: float
    fill_price: float
    fee: float
    """Fee in the quote asset."""
    mode: str
    """The broker's mode: ``paper``, ``testnet``, ``live``, or ``shadow`` (a hypothetical fill of the shadow
    challenger, never sent anywhere: streaming/shadow.py)."""
    exchange_order_id: str | None
    batch_id: int


@dataclass(frozen=True)
class PositionRecord:
    """The trader's account marked at the close of the hour ``open_time``, after that hour's order."""

    trader_id: str
    symbol: str
    open_time: int
    model_version: str
    units: float
    cash: float
    equity: float
    buy_hold_equity: float
    realized_pnl: float
    fees_paid: float
    day_start_equity: float
    batch_id: int


def legacy_not_executable(order: Mapping[str, Any]) -> bool:
    """An order row written before decisions that could not be orders stopped being recorded as rejected orders
    (``rejected`` with reason ``no_position`` / ``no_room``): counted as a :data:`NOT_EXECUTABLE` decision."""
    return order.get("status") == "rejected" and order.get("reason") in NOT_EXECUTABLE_REASONS
