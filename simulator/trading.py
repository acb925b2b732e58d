"""Paper orders and balances of the exchange simulator (``POST /api/v3/order``, ``GET /api/v3/account``).

MARKET orders fill at once at the replay's current price (the close of the latest closed kline), with a
fee taken in the quote asset. Balances start from ``initial_balances``. A repeated
``newClientOrderId`` is refused, as Binance does, so a replayed order can never fill twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from models.config import DEFAULT_CAPITAL
from simulator.store import format_number

QUOTE_ASSETS = ("USDT", "BUSD", "USDC", "BTC", "ETH", "BNB")


class ApiError(Exception):
    """A Binance-style error response: HTTP status, Binance error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` → (``BTC``, ``USDT``)."""
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ApiError(400, -1121, "Invalid symbol.")


@dataclass
class SimulatedOrder:
    """An order as the simulator received it (``POST /api/v3/order`` parameters, checked)."""

    symbol: str
    side: str
    type: str
    quantity: float | None
    quote_order_qty: float | None
    client_order_id: str | None


def parse_order(params: dict[str, str]) -> SimulatedOrder:
    """Check an order's parameters like Binance does (missing or bad ones → -1102 / -1013 / -1116)."""
    for name in ("symbol", "side", "type"):
        if not params.get(name):
            raise ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    side, order_type = params["side"].upper(), params["type"].upper()
    if side not in ("BUY", "SELL"):
        raise ApiError(400, -1117, "Invalid side.")
    if order_type != "MARKET":
        raise ApiError(400, -1116, "Invalid orderType. The simulator fills MARKET orders only.")
    try:
        quantity = float(params["quantity"]) if params.get("quantity") else None
        quote_qty = float(params["quoteOrderQty"]) if params.get("quoteOrderQty") else None
    except ValueError as exc:
        raise ApiError(400, -1100, "Illegal characters found in a parameter.") from exc
    if (quantity is None) == (quote_qty is None):
        raise ApiError(400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
    if (quantity or quote_qty or 0) <= 0:
        raise ApiError(400, -1013, "Invalid quantity.")
    return SimulatedOrder(params["symbol"], side, order_type, quantity, quote_qty, params.get("newClientOrderId"))


class PaperExchange:
    """Balances and filled orders of one simulated account."""

    def __init__(self, fee_rate: float = 0.001, initial_balances: dict[str, float] | None = None) -> None:
        self.fee_rate = fee_rate
        self.balances: dict[str, float] = dict(initial_balances or {"USDT": DEFAULT_CAPITAL})
        self.orders: dict[str, dict[str, Any]] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def place(self, order: SimulatedOrder, price: float | None, now_ms: int, test: bool = False) -> dict[str, Any]:
        """Fill a MARKET order at ``price`` (or only check it when ``test``); raise ApiError if it cannot."""
        base, quote = split_symbol(order.symbol)
        if price is None:
            raise ApiError(400, -1013, f"No price for {order.symbol} yet: the replay has not closed a kline.")
        qty = order.quantity if order.quantity is not None else (order.quote_order_qty or 0.0) / price
        notional = qty * price
        fee = notional * self.fee_rate
        with self._lock:
            if order.client_order_id and order.client_order_id in self.orders:
                raise ApiError(400, -2010, "Duplicate order sent.")
            if order.side == "BUY" and self.balances.get(quote, 0.0) < notional + fee:
                raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
            if order.side == "SELL" and self.balances.get(base, 0.0) < qty - 1e-12:
                raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
            if test:
                return {}
            sign = 1.0 if order.side == "BUY" else -1.0
            self.balances[base] = self.balances.get(base, 0.0) + sign * qty
            self.balances[quote] = self.balances.get(quote, 0.0) - sign * notional - fee
            order_id = self._next_id
            self._next_id += 1
            client_id = order.client_order_id or f"sim-{order_id}"
            response = self._response(order, order_id, client_id, qty, price, fee, quote, now_ms)
            self.orders[client_id] = response
            return response

    @staticmethod
    def _response(
        order: SimulatedOrder, order_id: int, client_id: str, qty: float, price: float, fee: float, quote: str, now: int
    ) -> dict[str, Any]:
        """Binance's FULL order response."""
        return {
            "symbol": order.symbol,
            "orderId": order_id,
            "orderListId": -1,
            "clientOrderId": client_id,
            "transactTime": now,
            "price": "0",
            "origQty": format_number(qty),
            "executedQty": format_number(qty),
            "cummulativeQuoteQty": format_number(qty * price),
            "status": "FILLED",
            "timeInForce": "GTC",
            "type": order.type,
            "side": order.side,
            "workingTime": now,
            "selfTradePreventionMode": "NONE",
            "fills": [
                {
                    "price": format_number(price),
                    "qty": format_number(qty),
                    "commission": format_number(fee),
                    "commissionAsset": quote,
                    "tradeId": order_id,
                }
            ],
        }

    def query(self, symbol: str, client_order_id: str | None, order_id: str | None) -> dict[str, Any]:
        """Binance's ``GET /api/v3/order`` body for a filled order; -2013 if there is none."""
        with self._lock:
            found = self.orders.get(client_order_id or "")
            if found is None and order_id is not None:
                found = next((o for o in self.orders.values() if str(o["orderId"]) == order_id), None)
        if found is None or found["symbol"] != symbol:
            raise ApiError(400, -2013, "Order does not exist.")
        query = {k: v for k, v in found.items() if k not in ("fills", "transactTime", "orderListId")}
        return query | {"time": found["transactTime"], "updateTime": found["transactTime"], "isWorking": False}

    def account(self, now_ms: int) -> dict[str, Any]:
        """Binance's ``GET /api/v3/account`` body."""
        with self._lock:
            balances = [
                {"asset": asset, "free": format_number(amount), "locked": "0"}
                for asset, amount in sorted(self.balances.items())
            ]
        commission = round(self.fee_rate * 10_000)
        return {
            "makerCommission": commission,
            "takerCommission": commission,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "updateTime": now_ms,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
        }
