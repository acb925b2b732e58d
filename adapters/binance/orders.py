"""Orders on Binance (testnet or live) or a Binance-compatible base URL (the exchange simulator), through
python-binance: :class:`BinanceBroker`, the exchange's :class:`~models.broker.Broker`.

MARKET orders carry the deterministic client order id as ``newClientOrderId``, and an order is looked
up by that id before it is sent: a re-sent order (a replayed micro-batch) returns the existing fill
instead of trading twice, also on Binance, which only refuses duplicate ids among *open* orders. Calls
are retried under the one :class:`~adapters.binance.retry.RetryPolicy` and their errors translated by
the one :func:`~adapters.binance.errors.translate_error`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from binance.client import Client
from binance.exceptions import BinanceAPIException

from adapters.binance.endpoints import use_base_url
from adapters.binance.retry import RetryPolicy
from models.broker import Fill, OrderRequest
from models.errors import PermanentError
from models.settings import Settings

log = logging.getLogger(__name__)

#: Binance error codes: order does not exist (lookup), duplicate order (create).
UNKNOWN_ORDER, DUPLICATE_ORDER = -2013, -2010
#: HTTP statuses of an exchange without ``GET /api/v3/order`` (the simulator); it refuses duplicate ids.
NO_LOOKUP = (404, 405)


def _fill_from_response(order: OrderRequest, response: dict[str, Any]) -> Fill:
    """Binance's order response (``FULL`` create or ``GET /api/v3/order``) as a :class:`Fill`."""
    executed = float(response.get("executedQty") or 0.0)
    quote = float(response.get("cummulativeQuoteQty") or 0.0)
    price = quote / executed if executed > 0 else order.price
    fee = 0.0
    for part in response.get("fills") or ():
        commission, asset = float(part.get("commission") or 0.0), str(part.get("commissionAsset", ""))
        # commission in the base asset is converted at the fill price; other assets (BNB) are not priced
        fee += commission * price if order.symbol.startswith(asset) and asset else commission
    status = str(response.get("status", ""))
    filled = status in ("FILLED", "PARTIALLY_FILLED") or executed > 0
    return Fill(
        order.client_order_id,
        "filled" if filled else "failed",
        executed,
        price,
        fee,
        str(response.get("orderId")) if response.get("orderId") is not None else None,
        None if filled else f"exchange status {status or 'unknown'}",
    )


class BinanceBroker:
    """MARKET orders through a python-binance ``Client`` (testnet, live or the simulator).

    Quantities are rounded down to the symbol's lot step: ``quantity_step`` if given, otherwise the
    ``LOT_SIZE`` filter's ``stepSize`` from the exchange's ``exchangeInfo``, read once per symbol."""

    def __init__(self, client: Client, mode: str, quantity_step: float | None = None, fee_rate: float = 0.001,
                 attempts: int = 5, max_wait: float = 10.0) -> None:  # fmt: skip
        self.client, self._mode, self.quantity_step, self.fee_rate = client, mode, quantity_step, fee_rate
        self._steps: dict[str, float] = {}
        self.retry = RetryPolicy(attempts=attempts, backoff_s=0.5, max_wait_s=max_wait)

    @property
    def mode(self) -> str:
        return self._mode

    def _existing(self, order: OrderRequest) -> dict[str, Any] | None:
        """The order with this client id if the exchange has it; None if it does not exist."""
        try:
            found = self.retry.call("query order", self.client.get_order, symbol=order.symbol,
                                    origClientOrderId=order.client_order_id)  # fmt: skip
        except PermanentError as exc:
            cause = exc.__cause__
            if isinstance(cause, BinanceAPIException) and (
                cause.code == UNKNOWN_ORDER or cause.status_code in NO_LOOKUP
            ):
                return None  # unknown order (or an exchange without the lookup endpoint: it refuses duplicates)
            raise
        return dict(found)

    def lookup(self, order: OrderRequest) -> Fill | None:
        existing = self._existing(order)
        return None if existing is None else _fill_from_response(order, existing)

    def lot_step(self, symbol: str) -> float:
        """The symbol's quantity step (``quantity_step``, or the exchange's ``LOT_SIZE`` ``stepSize``)."""
        if self.quantity_step is not None:
            return self.quantity_step
        if symbol not in self._steps:
            info = self.retry.call("exchange info", self.client.get_symbol_info, symbol=symbol)
            lot = next((f for f in (info or {}).get("filters", []) if f.get("filterType") == "LOT_SIZE"), None)
            if lot is None or float(lot.get("stepSize") or 0) <= 0:
                raise PermanentError(f"the exchange gives no LOT_SIZE step for {symbol}: cannot size its orders")
            self._steps[symbol] = float(lot["stepSize"])
            log.info("lot step symbol=%s step=%s", symbol, lot["stepSize"])
        return self._steps[symbol]

    def format_quantity(self, quantity: float, step: float) -> str:
        """Quantity rounded down to the lot ``step``, as Binance wants it (no exponent)."""
        steps = math.floor(quantity / step + 1e-9)
        decimals = max(0, -math.floor(math.log10(step)))
        return f"{steps * step:.{decimals}f}"

    def submit(self, order: OrderRequest) -> Fill:
        existing = self._existing(order)
        if existing is not None:
            log.info("order already at the exchange client_order_id=%s symbol=%s", order.client_order_id, order.symbol)
            return _fill_from_response(order, existing)
        params = {
            "symbol": order.symbol,
            "side": order.side,
            "type": "MARKET",
            "quantity": self.format_quantity(order.quantity, self.lot_step(order.symbol)),
            "newClientOrderId": order.client_order_id,
            "newOrderRespType": "FULL",
        }
        try:
            response = self.retry.call("create order", self.client.create_order, **params)
        except PermanentError as exc:
            cause = exc.__cause__
            if isinstance(cause, BinanceAPIException) and cause.code == DUPLICATE_ORDER and "uplicate" in cause.message:
                existing = self._existing(order)
                if existing is not None:
                    return _fill_from_response(order, existing)
                return self._assumed_fill(order, params["quantity"])
            log.warning("order refused client_order_id=%s symbol=%s reason=%s", order.client_order_id, order.symbol,
                        exc)  # fmt: skip
            return Fill(order.client_order_id, "failed", 0.0, order.price, 0.0, None, str(exc))
        return _fill_from_response(order, dict(response))

    def _assumed_fill(self, order: OrderRequest, sent_quantity: str) -> Fill:
        """The exchange has this client id (a resend) but cannot be queried: its MARKET order filled."""
        quantity = float(sent_quantity)
        log.warning("duplicate order not queryable, fill assumed client_order_id=%s symbol=%s",
                    order.client_order_id, order.symbol)  # fmt: skip
        fee = quantity * order.price * self.fee_rate
        reason = "resent: the exchange has this id but no order lookup; fill assumed at the close"
        return Fill(order.client_order_id, "filled", quantity, order.price, fee, None, reason)


def order_client(settings: Settings) -> Client:
    """An authenticated python-binance ``Client`` for ``settings`` (testnet, live or the base URL)."""
    assert settings.binance_api_key is not None and settings.binance_api_secret is not None
    key, secret = settings.binance_api_key.get_secret_value(), settings.binance_api_secret.get_secret_value()
    testnet = settings.trading_mode == "testnet" and not settings.binance_base_url  # testnet ignores API_URL
    client = Client(key, secret, testnet=testnet, ping=False, requests_params={"timeout": 10})
    return use_base_url(client, settings.binance_base_url)
