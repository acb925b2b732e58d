"""The exchange simulator: a real HTTP + websocket server speaking the Binance spot API subset the
platform uses, so python-binance (pointed at it by base URL) and the ingestor run offline.

REST: ``GET /api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo``, ``/api/v3/klines``;
``POST /api/v3/order`` and ``/api/v3/order/test`` (paper fills), ``GET /api/v3/order`` (query by client
order id), ``GET /api/v3/account`` (signed: with
``api_secret`` set, the HMAC-SHA256 ``signature`` is checked). Streams: see :mod:`.streams`. Control:
``POST|DELETE /_sim/faults`` (see :mod:`.faults`), ``GET /_sim/state``.

Use :meth:`SimulatorServer.start_in_thread` (tests: port 0 = a free port) or ``klinestream simulator``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from adapters.loop_thread import LoopThread, start_site
from models.kline import HOUR_MS
from simulator.faults import FaultPlan
from simulator.store import KlineStore, ReplayClock, rest_array
from simulator.streams import parse_stream_names, serve_stream
from simulator.trading import ApiError, PaperExchange, parse_order, split_symbol

log = logging.getLogger(__name__)

DEFAULT_PORT = 8900
MAX_LIMIT = 1000


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": message}, status=status, headers=headers)


class SimulatorServer:
    """Serves ``store``'s klines on ``host:port`` (0 = any free port) following ``clock``."""

    def __init__(
        self,
        store: KlineStore,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        clock: ReplayClock | None = None,
        faults: FaultPlan | None = None,
        exchange: PaperExchange | None = None,
        api_secret: str | None = None,
        updates_per_kline: int = 2,
        with_app: Callable[[web.Application], None] | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.clock = clock or ReplayClock()
        self.faults = faults or FaultPlan()
        self.exchange = exchange or PaperExchange()
        self.api_secret = api_secret
        self.updates_per_kline = updates_per_kline
        self.requests = 0
        self.with_app = with_app
        """Called with the app before it starts: the CLI adds /metrics, /health and /ready with it."""
        self._runner: web.AppRunner | None = None
        self._loop_thread = LoopThread("binance-simulator")

    # --- life cycle ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_middleware])
        app.add_routes(
            [
                web.get("/api/v3/ping", self._ping),
                web.get("/api/v3/time", self._time),
                web.get("/api/v3/exchangeInfo", self._exchange_info),
                web.get("/api/v3/klines", self._klines),
                web.post("/api/v3/order", self._order),
                web.get("/api/v3/order", self._query_order),
                web.post("/api/v3/order/test", self._order_test),
                web.get("/api/v3/account", self._account),
                web.get("/ws/{stream}", self._ws_single),
                web.get("/stream", self._ws_combined),
                web.post("/_sim/faults", self._add_fault),
                web.delete("/_sim/faults", self._clear_faults),
                web.get("/_sim/state", self._state),
            ]
        )
        if self.with_app is not None:
            self.with_app(app)
        return app

    async def start(self) -> None:
        self._runner, self.port = await start_site(self.app(), self.host, self.port)
        log.info("simulator listening on %s (symbols=%s)", self.base_url, ",".join(self.store.symbols))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self, timeout: float = 10.0) -> SimulatorServer:
        """Run the server on an event loop in a daemon thread; return once it listens."""
        self._loop_thread.start(self.start, self.stop, timeout)
        return self

    def stop_thread(self) -> None:
        self._loop_thread.stop()

    def __enter__(self) -> SimulatorServer:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # --- helpers ---------------------------------------------------------------------------------
    def klines_at(self, symbol: str, open_time: int) -> list[dict[str, Any]]:
        """The kline(s) served for one symbol and hour (after gap/corruption faults)."""
        index = self.store.index_of(symbol, open_time)
        if index is None:
            return []
        return self.faults.apply(symbol, [self.store.row(symbol, index)])

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        if request.path.startswith("/api/"):
            fault = self.faults.take_rest_fault(request.path)
            if fault is not None:
                log.info("fault: HTTP %d for %s", fault.status, request.path)
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
                if fault.status in (418, 429):
                    return _error(fault.status, -1003, "Too many requests; simulated rate limit.", headers)
                return web.Response(status=fault.status, text="simulated server error", headers=headers)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)

    def _symbol(self, value: str | None) -> str:
        if not value:
            raise ApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if self.store.get(value.upper()) is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return value.upper()

    async def _signed_params(self, request: web.Request) -> dict[str, str]:
        """Query + body parameters of a signed endpoint; checks key header, timestamp and signature."""
        body = await request.text()
        query = request.query_string
        params = dict(parse_qsl(query, keep_blank_values=True)) | dict(parse_qsl(body, keep_blank_values=True))
        if "timestamp" not in params:
            raise ApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        if self.api_secret:
            if not request.headers.get("X-MBX-APIKEY"):
                raise ApiError(401, -2014, "API-key format invalid.")
            if not _signature_ok(self.api_secret, query, body, params.get("signature", "")):
                raise ApiError(400, -1022, "Signature for this request is not valid.")
        return params

    # --- REST endpoints --------------------------------------------------------------------------
    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.clock.now_ms()})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        symbols = []
        for symbol in self.store.symbols:
            base, quote = split_symbol(symbol)
            symbols.append(
                {
                    "symbol": symbol,
                    "status": "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "orderTypes": ["MARKET"],
                    "isSpotTradingAllowed": True,
                    "permissions": ["SPOT"],
                    "filters": [
                        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"}
                    ],
                }
            )
        limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}]
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": self.clock.now_ms(),
                "rateLimits": limits,
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    async def _klines(self, request: web.Request) -> web.Response:
        query = request.query
        symbol = self._symbol(query.get("symbol"))
        if query.get("interval") != "1h":
            raise ApiError(400, -1120, "Invalid interval. The simulator serves 1h klines.")
        try:
            limit = int(query.get("limit", "500"))
            start = int(query["startTime"]) if "startTime" in query else None
            end = int(query["endTime"]) if "endTime" in query else None
        except ValueError as exc:
            raise ApiError(400, -1100, "Illegal characters found in a parameter.") from exc
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, -1130, f"Data sent for parameter 'limit' is not valid (1..{MAX_LIMIT}).")
        if start is not None and end is not None and start > end:
            raise ApiError(400, -1023, "Start time is greater than end time.")
        rows = [self.store.row(symbol, i) for i in self.store.window(symbol, start, end, limit, self.clock.now_ms())]
        body = [rest_array(row) for row in self.faults.apply(symbol, rows)]
        return web.json_response(body, headers={"X-MBX-USED-WEIGHT-1M": "2"})

    async def _place(self, request: web.Request, test: bool) -> web.Response:
        params = await self._signed_params(request)
        order = parse_order(params)
        symbol = self._symbol(order.symbol)
        now = self.clock.now_ms()
        result = self.exchange.place(order, self.store.last_price(symbol, now), now, test=test)
        if not test:
            log.info("paper fill symbol=%s side=%s qty=%s", symbol, order.side, result["executedQty"])
        return web.json_response(result)

    async def _order(self, request: web.Request) -> web.Response:
        return await self._place(request, test=False)

    async def _query_order(self, request: web.Request) -> web.Response:
        params = await self._signed_params(request)
        symbol = self._symbol(params.get("symbol"))
        return web.json_response(self.exchange.query(symbol, params.get("origClientOrderId"), params.get("orderId")))

    async def _order_test(self, request: web.Request) -> web.Response:
        return await self._place(request, test=True)

    async def _account(self, request: web.Request) -> web.Response:
        await self._signed_params(request)
        return web.json_response(self.exchange.account(self.clock.now_ms()))

    # --- streams and control ---------------------------------------------------------------------
    async def _ws_single(self, request: web.Request) -> web.WebSocketResponse:
        symbols = parse_stream_names([request.match_info["stream"]], self.store.symbols)
        return await serve_stream(self, request, symbols, combined=False)

    async def _ws_combined(self, request: web.Request) -> web.WebSocketResponse:
        names = [n for n in request.query.get("streams", "").split("/") if n]
        if not names:
            raise web.HTTPBadRequest(text="pass ?streams=<symbol>@kline_1h/<symbol>@kline_1h")
        return await serve_stream(self, request, parse_stream_names(names, self.store.symbols), combined=True)

    async def _add_fault(self, request: web.Request) -> web.Response:
        try:
            self.faults.add(await request.json())
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"ok": True})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "now": self.clock.now_ms(),
                "symbols": self.store.symbols,
                "requests": self.requests,
                "balances": self.exchange.balances,
                "hour_ms": HOUR_MS,
            }
        )


def _without_signature(raw: str) -> str:
    return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))


def _signature_ok(secret: str, query: str, body: str, signature: str) -> bool:
    """Binance's HMAC-SHA256 check: the signed payload is the query string followed by the body."""
    payload = _without_signature(query) + _without_signature(body)
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
