"""Brokers: where the online trader's orders go (paper by default; Binance testnet or live on request).

- :class:`PaperBroker` fills a MARKET order at the decision's close moved against the trader by
  ``slippage_bps`` and charges ``fee_rate`` of the notional in the quote asset. Deterministic: the
  same order always fills the same way, so a replayed micro-batch reproduces its fills.
- :class:`BinanceBroker` sends MARKET orders through python-binance to Binance (testnet or live) or
  to a Binance-compatible base URL (the exchange simulator). ``newClientOrderId`` is the
  deterministic client order id, and an order is looked up by that id before it is sent: a
  re-sent order (a replayed micro-batch) returns the existing fill instead of trading twice, also on
  Binance, which only refuses duplicate ids among *open* orders.
- :func:`make_broker` is the only place a broker is built from settings, and refuses testnet/live
  without explicit settings and keys (:class:`~models.errors.TradingSafetyError`). Backtests get a
  paper broker and never see keys.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from models.accounting import market_fill
from models.errors import PermanentError, TemporaryError, TradingSafetyError
from models.settings import Settings

log = logging.getLogger(__name__)

#: Binance error codes: order does not exist (lookup), duplicate order (create).
UNKNOWN_ORDER, DUPLICATE_ORDER = -2013, -2010
RETRYABLE_STATUS = (418, 429)
#: HTTP statuses of an exchange without ``GET /api/v3/order`` (the simulator); it refuses duplicate ids.
NO_LOOKUP = (404, 405)


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


def _translate(exc: Exception, what: str) -> TemporaryError | PermanentError:
    """A python-binance / requests exception as a Klinestream error (never carries the keys)."""
    if isinstance(exc, BinanceAPIException):
        status = exc.status_code
        if status in RETRYABLE_STATUS or status >= 500:
            return TemporaryError(f"{what}: Binance HTTP {status} (code {exc.code}): {exc.message}")
        return PermanentError(f"{what}: Binance refused (HTTP {status}, code {exc.code}): {exc.message}")
    if isinstance(exc, requests.Timeout | requests.ConnectionError | BinanceRequestException):
        return TemporaryError(f"{what}: {type(exc).__name__}: {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}")


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
        self._retrying = Retrying(
            retry=retry_if_exception_type(TemporaryError),
            wait=wait_exponential(multiplier=0.5, max=max_wait),
            stop=stop_after_attempt(attempts),
            reraise=True,
        )

    @property
    def mode(self) -> str:
        return self._mode

    def _call(self, what: str, function: Callable[..., Any], **params: Any) -> Any:
        def attempt() -> Any:
            try:
                return function(**params)
            except (BinanceAPIException, BinanceRequestException, requests.RequestException) as exc:
                raise _translate(exc, what) from exc

        return self._retrying(attempt)

    def _existing(self, order: OrderRequest) -> dict[str, Any] | None:
        """The order with this client id if the exchange has it; None if it does not exist."""
        try:
            found = self._call("query order", self.client.get_order, symbol=order.symbol,
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
            info = self._call("exchange info", self.client.get_symbol_info, symbol=symbol)
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
            response = self._call("create order", self.client.create_order, **params)
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


def _binance_client(settings: Settings) -> Client:
    assert settings.binance_api_key is not None and settings.binance_api_secret is not None
    key, secret = settings.binance_api_key.get_secret_value(), settings.binance_api_secret.get_secret_value()
    if settings.binance_base_url:
        client = Client(key, secret, ping=False, requests_params={"timeout": 10})
        client.API_URL = settings.binance_base_url.rstrip("/") + "/api"
        return client
    return Client(key, secret, testnet=settings.trading_mode == "testnet", ping=False, requests_params={"timeout": 10})


def check_trading_consent(settings: Settings) -> None:
    """Raise TradingSafetyError unless testnet/live have their keys (and live its confirmation).

    Settings already refuse these at start-up; this second check guards settings built without
    validation (``model_construct``) or changed by hand.
    """
    mode = settings.trading_mode
    if mode == "paper":
        return
    if mode not in ("testnet", "live"):
        raise TradingSafetyError(f"unknown trading mode {mode!r}; set KLINESTREAM_TRADING_MODE=paper|testnet|live")
    for name in ("binance_api_key", "binance_api_secret"):
        secret = getattr(settings, name)
        if secret is None or not secret.get_secret_value():
            raise TradingSafetyError(f"trading_mode={mode} needs KLINESTREAM_{name.upper()}; refusing to trade")
    if mode == "live" and settings.live_confirm is not True:
        raise TradingSafetyError("trading_mode=live needs KLINESTREAM_LIVE_CONFIRM=true; refusing to trade")


def make_broker(
    settings: Settings, *, backtest: bool = False, client_factory: Callable[[Settings], Client] = _binance_client
) -> Broker:
    """The broker of ``settings.trading_mode``; a backtest always gets a paper broker and no keys."""
    paper = PaperBroker(settings.fee_rate, settings.slippage_bps)
    if backtest or settings.trading_mode == "paper":
        return paper
    check_trading_consent(settings)
    target = settings.binance_base_url or ("Binance testnet" if settings.trading_mode == "testnet" else "Binance")
    log.warning("trading_mode=%s orders go to %s", settings.trading_mode, target)
    return BinanceBroker(client_factory(settings), settings.trading_mode, fee_rate=settings.fee_rate)
