"""Brokers from settings: where the online trader's orders go (paper by default; Binance testnet or live
on request).

:func:`make_broker` is the only place a broker is built from settings, and refuses testnet/live without
explicit settings and keys (:class:`~models.errors.TradingSafetyError`). Backtests get a paper broker
and never see keys. The brokers themselves: :class:`~models.broker.PaperBroker` (the domain's
deterministic fills) and :class:`~adapters.binance.orders.BinanceBroker` (python-binance).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from binance.client import Client

from adapters.binance.orders import BinanceBroker, order_client
from models.broker import Broker, PaperBroker
from models.errors import TradingSafetyError
from models.settings import Settings

log = logging.getLogger(__name__)


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
    settings: Settings, *, backtest: bool = False, client_factory: Callable[[Settings], Client] = order_client
) -> Broker:
    """The broker of ``settings.trading_mode``; a backtest always gets a paper broker and no keys."""
    paper = PaperBroker(settings.fee_rate, settings.slippage_bps)
    if backtest or settings.trading_mode == "paper":
        return paper
    check_trading_consent(settings)
    target = settings.binance_base_url or ("Binance testnet" if settings.trading_mode == "testnet" else "Binance")
    log.warning("trading_mode=%s orders go to %s", settings.trading_mode, target)
    return BinanceBroker(client_factory(settings), settings.trading_mode, fee_rate=settings.fee_rate)
