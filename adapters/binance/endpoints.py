"""Pointing python-binance at a Binance-compatible server (the exchange simulator): the one place.

python-binance 1.0.37 takes no base URL argument (``tld`` / ``base_endpoint`` only pick among
binance.com hosts): every spot REST URL is built as ``API_URL + "/v3/..."`` and every stream URL from
``BinanceSocketManager.STREAM_URL``, so both roots are replaced on the instances right after
construction. A client built with ``testnet=True`` ignores ``API_URL`` (it uses ``API_TESTNET_URL``):
build it without when a base URL is given.
"""

from __future__ import annotations

from typing import TypeVar

from binance import BinanceSocketManager
from binance.base_client import BaseClient

ClientT = TypeVar("ClientT", bound=BaseClient)


def rest_root(base_url: str) -> str:
    """``http://host:port`` → python-binance's ``API_URL`` (``http://host:port/api``)."""
    return base_url.rstrip("/") + "/api"


def stream_root(ws_url: str) -> str:
    """``ws://host:port`` → python-binance's ``STREAM_URL`` (``ws://host:port/``)."""
    return ws_url.rstrip("/") + "/"


def use_base_url(client: ClientT, base_url: str | None) -> ClientT:
    """Root ``client``'s REST calls (a sync ``Client`` or an ``AsyncClient``) at ``base_url`` when given."""
    if base_url:
        client.API_URL = rest_root(base_url)
    return client


def use_stream_url(manager: BinanceSocketManager, ws_url: str | None) -> BinanceSocketManager:
    """Root a ``BinanceSocketManager``'s streams at ``ws_url`` when given."""
    if ws_url:
        manager.STREAM_URL = stream_root(ws_url)
    return manager


BINANCE_REST = "https://api.binance.com"


def ping_exchange(base_url: str | None, timeout: float = 2.0) -> None:
    """Raise unless the exchange's ``/api/v3/ping`` (Binance, or the server at ``base_url``) answers now."""
    import requests

    from models.errors import TemporaryError

    url = f"{(base_url or BINANCE_REST).rstrip('/')}/api/v3/ping"
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise TemporaryError(f"exchange unreachable at {url}: {type(exc).__name__}") from exc
    if not response.ok:
        raise TemporaryError(f"exchange at {url} answered {response.status_code}")
