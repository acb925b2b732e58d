"""Serving an asyncio server from a daemon thread, for tests, the demo and in-process use.

The simulator and the dashboard both expose ``async start()`` / ``async stop()``; :class:`LoopThread`
runs them on an event loop of its own thread and returns once the server listens. It sits in adapters/
beside the I/O it hosts, where both simulator/ and klinestream/ (the dashboard) may import it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any


class LoopThread:
    """One event loop in one daemon thread, running a server between ``start`` and ``stop``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(
        self, start: Callable[[], Awaitable[Any]], stop: Callable[[], Awaitable[Any]], timeout: float = 10.0
    ) -> None:
        """Run ``start()`` on the thread's loop and return once it has; re-raise its error if it failed."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(start())
            except BaseException as exc:  # handed to the caller's thread below
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(stop())
            loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"{self.name} did not start within {timeout} s")
        if errors:
            raise errors[0]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (the server's ``stop()`` runs on it) and join the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=timeout)
            self._thread = None


async def start_site(app: Any, host: str, port: int) -> tuple[Any, int]:
    """Serve the aiohttp ``app`` on ``host:port`` (0 = any free port); returns its runner (``cleanup()`` it to
    stop) and the port it listens on."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    return runner, int(sockets[0].getsockname()[1]) if sockets else port
