"""Orders and fills of the online trader, the :class:`Broker` protocol, and the deterministic paper broker.

- :class:`OrderRequest` is a MARKET order decided at the close of an hour, keyed by its deterministic
  client order id; :class:`Fill` is what the broker did with it.
- :class:`PaperBroker` fills a MARKET order at the decision's close moved against the trader by
  ``slippage_bps`` and charges ``fee_rate`` of the notional in the quote asset. Deterministic: the
  same order always fills the same way, so a replayed micro-batch reproduces its fills.
- :class:`ShadowBroker` is the paper broker's arithmetic for the shadow challenger (streaming/shadow.py): its
  hypothetical fills are recorded with mode ``shadow`` and no exchange order id; nothing is ever sent.
- The exchange's broker (:class:`adapters.binance.orders.BinanceBroker`) and the choice between them
  (:func:`streaming.brokers.make_broker`) live outside the domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from models.accounting import market_fill


@dataclass(frozen=True)
class OrderRequest:
    """A MARKET order decided at the close of ``open_time``."""

    client_order_id: str
    symbol: str
    side: str  # "BUY" | "SELL"
    quantity: float
    price: float  # the close the decision saw
    open_time: int


@dataclass(frozen=True)
class Fill:
    """What the broker did with an order."""

    client_order_id: str
    status: str  # "filled" | "failed"
    filled_quantity: float
    fill_price: float
    fee: float  # in the quote asset
    exchange_order_id: str | None = None
    reason: str | None = None


class Broker(Protocol):
    """Sends orders; ``submit`` of the same ``client_order_id`` twice must not trade twice."""

    @property
    def mode(self) -> str: ...

    def submit(self, order: OrderRequest) -> Fill: ...

    def lookup(self, order: OrderRequest) -> Fill | None:
        """The fill of an order already sent with this client id, without sending anything."""
        ...


class PaperBroker:
    """Deterministic fills at the close with ``fee_rate`` and ``slippage_bps``."""

    def __init__(self, fee_rate: float = 0.001, slippage_bps: float = 0.0) -> None:
        if not 0.0 <= fee_rate < 0.1 or slippage_bps < 0.0:
            raise ValueError(f"fee_rate {fee_rate} must be in [0, 0.1) and slippage_bps {slippage_bps} >= 0")
        self.fee_rate, self.slippage_bps = fee_rate, slippage_bps

    @property
    def mode(self) -> str:
        return "paper"

    def lookup(self, order: OrderRequest) -> Fill | None:
        return None  # paper orders leave nothing outside the trader's own state

    def submit(self, order: OrderRequest) -> Fill:
        price, fee = market_fill(order.side, order.quantity, order.price, self.fee_rate, self.slippage_bps)
        return Fill(order.client_order_id, "filled", order.quantity, price, fee, f"paper-{order.client_order_id}")


SHADOW_MODE = "shadow"
#: Broker modes whose orders leave nothing outside the trader (no intent to make durable before sending).
UNSENT_MODES = ("paper", SHADOW_MODE)


class ShadowBroker(PaperBroker):
    """The paper broker's fills (same fees, same slippage) for orders that are never sent: mode ``shadow``."""

    @property
    def mode(self) -> str:
        return SHADOW_MODE

    def submit(self, order: OrderRequest) -> Fill:
        fill = super().submit(order)
        return Fill(fill.client_order_id, fill.status, fill.filled_quantity, fill.fill_price, fill.fee, None)
