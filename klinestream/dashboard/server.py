"""``klinestream dashboard``: a small aiohttp server — one static page and a JSON API over Cassandra.

Routes (each API route takes ``trader`` and ``symbol``; without them, the default trader the server was
started with, else the newest demo trader, else the first trader found):

- ``/`` (the page), ``/static/*`` (its JS, CSS and the chart library built by ``make install``: no CDN);
- ``/api/window`` — the page's bounded reads of one trader: the last ``hours`` (first load, with the P&L base
  of ``since``), ``?after=<open time>`` (the 2-second refresh: from the newest hour the page holds on) or
  ``?before=<open time>`` (zooming out): decisions, orders, positions, model changes and candles;
- ``/api/overview`` — every trader (equity, P&L against buy-and-hold, position, last decision, health);
- ``/api/traders``, ``/api/decisions?limit=``; ``/api/summary?since=<epoch ms>`` (the demo's figures over the
  whole partitions from that hour on: the demo's printed summary counts the same way; never polled);
- ``POST /api/kill-switch`` (login + CSRF token), and the login routes of :mod:`klinestream.dashboard.security`,
  which also guards every route with the Host allow-list.

Cassandra calls are blocking, so they run in the default executor, off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from adapters.loop_thread import LoopThread
from klinestream.dashboard.api import DashboardReader
from klinestream.dashboard.security import AccessPolicy, add_access, json_body, require_control
from models.credentials import CassandraRole

if TYPE_CHECKING:
    from models.settings import Settings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_LIMIT = 1000
MAX_HOURS = 8784
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


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _int_param(request: web.Request, name: str, example: str) -> int | None:
    """An integer query parameter, None when absent; 400 naming it when it is not an integer."""
    text = request.query.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise _bad_request(f"{name} must be an integer, e.g. ?{name}={example}") from None


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
        raise _bad_request("since must be epoch milliseconds, e.g. ?since=1672531200000") from None


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


async def window(request: web.Request) -> web.Response:
    """One trader's hours: ``?after=`` (refresh), ``?before=`` (older), else the first load."""
    after = _int_param(request, "after", "1672531200000")
    before = _int_param(request, "before", "1672531200000")
    hours = _int_param(request, "hours", "168")
    if hours is not None:
        hours = max(1, min(MAX_HOURS, hours))
    since = _since(request)
    who = await _who(request)
    if who is None:
        return _no_trader()
    reader = request.app[READER_KEY]
    if after is not None:
        body = await _blocking(reader.newer, *who, after)
    elif before is not None:
        body = await _blocking(reader.older, *who, before, hours)
    else:
        body = await _blocking(reader.window, *who, since, hours)
    return web.json_response(body)


async def overview(request: web.Request) -> web.Response:
    return web.json_response(await _blocking(request.app[READER_KEY].overview))


async def kill_switch(request: web.Request) -> web.Response:
    """``POST /api/kill-switch {"active": bool, "trader_id": str | null, "reason": str}`` (login + CSRF)."""
    require_control(request)
    body = await json_body(request)
    active, trader_id = body.get("active"), body.get("trader_id")
    if not isinstance(active, bool):
        raise _bad_request("active must be true or false")
    if trader_id is not None and not (isinstance(trader_id, str) and 0 < len(trader_id) <= 200):
        raise _bad_request("trader_id must be a trader id, or null for every trader")
    reason = str(body.get("reason") or ("stop" if active else "resume"))[:200]
    controls = request.app[READER_KEY].controls
    await _blocking(controls.set_kill_switch, active, f"dashboard: {reason}", trader_id)
    state = await _blocking(controls.kill_switch_active, trader_id)
    return web.json_response({"trader_id": trader_id, "active": active, "kill_switch": state})


def add_trading_routes(app: web.Application) -> None:
    """The page and the read-only API."""
    app.router.add_get("/", index)
    app.router.add_get("/api/traders", traders)
    app.router.add_get("/api/summary", summary)
    app.router.add_get("/api/decisions", decisions)
    app.router.add_get("/api/window", window)
    app.router.add_get("/api/overview", overview)
    app.router.add_static("/static/", STATIC_DIR)


def add_control_routes(app: web.Application) -> None:
    """The kill-switch toggle (behind the login of :mod:`klinestream.dashboard.security`)."""
    app.router.add_post("/api/kill-switch", kill_switch)


def build_app(
    reader: DashboardReader,
    trader_id: str | None = None,
    symbol: str | None = None,
    since: int | None = None,
    access: AccessPolicy | None = None,
) -> web.Application:
    """The dashboard's app; ``access`` defaults to a loopback dashboard without login (no controls)."""
    app = web.Application()
    app[READER_KEY] = reader
    defaults = {"trader_id": trader_id, "symbol": symbol, "since": None if since is None else str(since)}
    app[DEFAULTS_KEY] = {k: v for k, v in defaults.items() if v}
    add_access(app, access or AccessPolicy.for_server("127.0.0.1"))
    add_trading_routes(app)
    add_control_routes(app)
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
        access: AccessPolicy | None = None,
    ) -> None:
        self.app = build_app(reader, trader_id, symbol, since, access or AccessPolicy.for_server(host))
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
        """Run the server on an event loop in a daemon thread; return once it listens (if it cannot, release
        the Cassandra connection and raise)."""
        try:
            self._loop_thread.start(self.start, self.stop, timeout)
        except BaseException:
            self.close()
            raise
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


def dashboard_server(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8050,
    trader_id: str | None = None,
    symbol: str | None = None,
    since: int | None = None,
) -> DashboardServer:
    """The dashboard of ``settings``: bounded reads, candles from the lake, the login and the Host allow-list.

    ``start_in_thread()`` or ``serve_forever()`` it; ``close()`` releases its Cassandra connection. ``since``
    (epoch ms): P&L counts from that hour unless the page asks otherwise. Checks the access settings and builds
    the chart library (if ``make install`` has not) before it connects: clear errors, no connection left open."""
    from adapters.cassandra.controls import CassandraControls
    from adapters.cassandra.reader import TradeReader
    from adapters.cassandra.session import CassandraSession
    from klinestream.dashboard.assets import ensure_assets
    from klinestream.dashboard.klines import LakeKlines
    from klinestream.observability import dashboard_ops

    access = AccessPolicy.for_server(
        host, settings.dashboard_password, settings.dashboard_allowed_hosts, settings.dashboard_session_hours
    )
    ensure_assets()
    db = CassandraSession.connect(settings, CassandraRole.DASHBOARD, max_outage_seconds=60)
    reader = DashboardReader(TradeReader(db), CassandraControls(db), LakeKlines(settings.lake_root),
                             settings.dashboard_window_hours, settings.dashboard_stale_after_seconds)  # fmt: skip
    server = DashboardServer(reader, host, port, trader_id, symbol, since=since, access=access)
    readiness = dashboard_ops(server.app, db)  # /metrics, /health, /ready (Cassandra answers)

    def close() -> None:
        readiness.stop()
        db.close()

    server.on_close = close
    return server
