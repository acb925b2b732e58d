"""Kline websocket streams of the exchange simulator: ``/ws/<symbol>@kline_1h`` and
``/stream?streams=<a>@kline_1h/<b>@kline_1h``.

Each stream follows the replay clock: for every hour it sends ``updates`` non-closed updates
(``"x": false``, the kline so far) and then the closed kline (``"x": true``) when the hour ends, like
Binance. Combined streams wrap each message as ``{"stream": ..., "data": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from models.kline import HOUR_MS
from simulator.store import format_number

if TYPE_CHECKING:
    from simulator.server import SimulatorServer

log = logging.getLogger(__name__)


def kline_message(
    row: dict[str, Any], symbol: str, event_ms: int, closed: bool, fraction: float = 1.0
) -> dict[str, Any]:
    """A Binance kline stream event for ``row``; with ``fraction`` < 1 the kline as it stood then."""
    open_, close = row["open"], row["close"]
    now_close = open_ + (close - open_) * fraction if fraction < 1 else close
    high = row["high"] if fraction >= 1 else max(open_, now_close)
    low = row["low"] if fraction >= 1 else min(open_, now_close)

    def part(value: float | None) -> str | None:
        return None if value is None else format_number(value * fraction)

    count = row["count"]
    close_time = row["close_time"] if row["close_time"] is not None else row["open_time"] + HOUR_MS - 1
    return {
        "e": "kline",
        "E": event_ms,
        "s": symbol,
        "k": {
            "t": row["open_time"],
            "T": close_time,
            "s": symbol,
            "i": "1h",
            "f": -1,
            "L": -1,
            "o": format_number(open_),
            "c": format_number(now_close),
            "h": format_number(high),
            "l": format_number(low),
            "v": part(row["volume"]),
            "n": None if count is None else int(count * fraction),
            "x": closed,
            "q": part(row["quote_volume"]),
            "V": part(row["taker_buy_volume"]),
            "Q": part(row["taker_buy_quote_volume"]),
            "B": "0",
        },
    }


def parse_stream_names(names: list[str], known: list[str]) -> list[str]:
    """``["btcusdt@kline_1h", ...]`` → ``["BTCUSDT", ...]``; unknown or unsupported names → HTTP 400."""
    symbols = []
    for name in names:
        symbol, _, kind = name.partition("@")
        if kind != "kline_1h":
            raise web.HTTPBadRequest(text=f"unsupported stream {name!r}: the simulator serves <symbol>@kline_1h")
        if symbol.upper() not in known:
            raise web.HTTPBadRequest(text=f"unknown symbol in stream {name!r}; known: {known}")
        symbols.append(symbol.upper())
    return symbols


async def serve_stream(
    sim: SimulatorServer, request: web.Request, symbols: list[str], combined: bool
) -> web.WebSocketResponse:
    """Replay klines of ``symbols`` to one websocket client until it leaves (or a drop fault fires)."""
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    drop_after = sim.faults.take_websocket_drop()
    reader = asyncio.create_task(_drain(ws))
    sent = 0
    hour = sim.clock.now_ms() // HOUR_MS * HOUR_MS
    fractions = [(i + 1) / (sim.updates_per_kline + 1) for i in range(sim.updates_per_kline)]
    try:
        while not ws.closed and not reader.done():
            for fraction in [*fractions, 1.0]:
                event_ms = hour + int(HOUR_MS * fraction) - (1 if fraction == 1.0 else 0)
                await asyncio.sleep(sim.clock.seconds_until(event_ms))
                for symbol in symbols:
                    for row in sim.klines_at(symbol, hour):
                        message = kline_message(row, symbol, sim.clock.now_ms(), fraction == 1.0, fraction)
                        if combined:
                            message = {"stream": f"{symbol.lower()}@kline_1h", "data": message}
                        if drop_after is not None and sent >= drop_after:
                            log.info("fault: dropping websocket after %d messages", sent)
                            await ws.close(code=1006, message=b"simulated drop")
                            return ws
                        await ws.send_json(message)
                        sent += 1
            hour += HOUR_MS
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        reader.cancel()
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) client frames, so pings are answered and a close is noticed."""
    async for message in ws:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
