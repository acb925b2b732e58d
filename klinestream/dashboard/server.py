"""``klinestream dashboard``: a small aiohttp server — one static page and a JSON API over Cassandra.

Routes: ``/`` (the page), ``/static/*`` (its JS and CSS, no CDN), ``/api/traders``,
``/api/summary``, ``/api/decisions?limit=``, ``/api/series`` (each takes ``trader`` and ``symbol``;
without them, the newest demo trader, else the first trader found). ``/api/summary?since=<epoch ms>`` counts
decisions, orders and P&L from that hour on, as the demo's summary does for its replay (the page passes on
its own ``?trader=&symbol=&since=``). The page polls every 2 s.
Cassandra calls are blocking, so they run in the default executor, off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from adapters.loop_thread import LoopThread
from klinestream.dashboard.api import DashboardReader
from models.settings import Settings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_LIMIT = 1000
T = TypeVar("T")

READER_KEY = web.AppKey("reader", DashboardReader)
DEFAULTS_KEY = web.AppKey("defaults", dict)


async def _blocking(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(call, *args))


async def _who(request: web.Request) -> tuple[str, str] | None:
    """The (trader, symbol) asked for, else the default one, else the first with rows."""
    trader, symbol = request.query.get("trader"), request.query.get("symbol")
    defaults: dict[str, str] = request.app[DEFAULTS_KEY]
    trader = trader or defaults.get("trader_id")
    if trader and (symbol or defaults.get("symbol")):
        return trader, symbol or defaults["symbol"]
    traders = await _blocking(request.app[READER_KEY].traders)
    matching = [t for t in traders if trader is None or t["trader_id"] == trader]
    if not matching:
        return None
    return matching[0]["trader_id"], symbol or matching[0]["symbol"]


def _no_trader() -> web.Response:
    return web.json_response({"error": "no trader has written positions yet; start `klinestream demo`"}, status=404)


async def index(request: web.Request) -> web.FileResponse:
    # the page is UTF-8: say so in the header too (aiohttp sends a bare text/html, read as Latin-1 by clients)
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})


async def traders(request: web.Request) -> web.Response:
    return web.json_response(await _blocking(request.app[READER_KEY].traders))


def _since(request: web.Request) -> int | None:
    """``?since=`` (epoch ms: count from that hour on), else the server's default, else None (the whole life)."""
    text = request.query.get("since") or request.app[DEFAULTS_KEY].get("since")
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "since must be epoch milliseconds, e.g. ?since=1672531200000"}',
            content_type="application/json",
        ) from None


async def summary(request: web.Request) -> web.Response:
    since = _since(request)
    who = await _who(request)
    if who is None:
        return _no_trader()
    return web.json_response(await _blocking(request.app[READER_KEY].summary, *who, since))


async def decisions(request: web.Request) -> web.Response:
    try:
        limit = max(1, min(MAX_LIMIT, int(request.query.get("limit", "20"))))
    except ValueError:
        return web.json_response({"error": "limit must be an integer, e.g. ?limit=20"}, status=400)
    who = await _who(request)
    if who is None:
        return _no_trader()
    return web.json_response(await _blocking(request.app[READER_KEY].decisions, *who, limit))


async def series(request: web.Request) -> web.Response:
    who = await _who(request)
    if who is None:
        return _no_trader()
    return web.json_response(await _blocking(request.app[READER_KEY].series, *who))


def build_app(
    reader: DashboardReader, trader_id: str | None = None, symbol: str | None = None, since: int | None = None
) -> web.Application:
    app = web.Application()
    app[READER_KEY] = reader
    defaults = {"trader_id": trader_id, "symbol": symbol, "since": None if since is None else str(since)}
    app[DEFAULTS_KEY] = {k: v for k, v in defaults.items() if v}
    app.router.add_get("/", index)
    app.router.add_get("/api/traders", traders)
    app.router.add_get("/api/summary", summary)
    app.router.add_get("/api/decisions", decisions)
    app.router.add_get("/api/series", series)
    app.router.add_static("/static/", STATIC_DIR)
    return app


class DashboardServer:
    """The dashboard on ``host:port`` (0 = any free port), in this thread or a background one."""

    def __init__(
        self,
        reader: DashboardReader,
        host: str = "127.0.0.1",
        port: int = 8050,
        trader_id: str | None = None,
        symbol: str | None = None,
        on_close: Callable[[], None] | None = None,
        since: int | None = None,
    ) -> None:
        self.app = build_app(reader, trader_id, symbol, since)
        self.on_close = on_close
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None
        self._loop_thread = LoopThread("dashboard")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("dashboard listening url=%s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self, timeout: float = 10.0) -> DashboardServer:
        """Run the server on an event loop in a daemon thread; return once it listens."""
        self._loop_thread.start(self.start, self.stop, timeout)
        return self

    def stop_thread(self) -> None:
        self._loop_thread.stop()

    def close(self) -> None:
        """Stop the background thread and release the Cassandra connection."""
        self.stop_thread()
        if self.on_close is not None:
            self.on_close()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


def open_dashboard(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8050,
    trader_id: str | None = None,
    symbol: str | None = None,
    since: int | None = None,
) -> DashboardServer:
    """The dashboard on the Cassandra of ``settings``, serving from a background thread (close() it).

    ``since`` (epoch ms): the summary counts from that hour on unless the page asks otherwise."""
    from adapters.cassandra.controls import CassandraControls
    from adapters.cassandra.reader import TradeReader
    from adapters.cassandra.session import CassandraSession

    db = CassandraSession.connect(settings, max_outage_seconds=60)
    reader = DashboardReader(TradeReader(db), CassandraControls(db))
    server = DashboardServer(reader, host, port, trader_id, symbol, on_close=db.close, since=since)
    try:
        return server.start_in_thread()
    except BaseException:
        db.close()
        raise
