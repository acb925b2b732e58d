"""The operations endpoints every long-running process serves: ``/metrics``, ``/health`` and ``/ready``.

- ``/metrics``: the process's Prometheus registry in the text exposition format (prometheus-client).
- ``/health`` (liveness): 200 while the process answers at all; a supervisor restarts a process that stops
  answering it.
- ``/ready`` (readiness): 200 when every named check passed on its last run, else 503; the body lists each
  check with ``ok`` and a detail. The checks (Kafka, Cassandra, the registry reachable, a model loaded…)
  run on a background thread every ``interval`` seconds, each bounded by ``timeout``: a request never waits
  on a service, and a check stuck on an unreachable one counts as failed without piling up threads.

The dashboard and the simulator add these routes to their own aiohttp app (:func:`add_ops_routes`); the
stream and the ingestor, which serve no HTTP otherwise, run an :class:`OpsServer` on a port of their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from adapters.loop_thread import LoopThread, start_site

log = logging.getLogger(__name__)

#: A readiness check: returns quietly (or a detail string) when ready, raises when not.
Check = Callable[[], "str | None"]


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    at: float
    """``time.time()`` of the run that produced it."""


def new_registry() -> CollectorRegistry:
    """A registry of the process's own metrics with the standard ``process_*`` collector."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


class KlineAges(Collector):
    """``klinestream_last_kline_age_seconds{symbol}``: now − the close time of the newest kline seen of each
    symbol, computed when scraped (so it keeps growing while nothing comes)."""

    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._close_ms: dict[str, int] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def saw(self, symbol: str, close_time_ms: int) -> None:
        with self._lock:
            if close_time_ms > self._close_ms.get(symbol, -1):
                self._close_ms[symbol] = close_time_ms

    def latest(self) -> dict[str, int]:
        """The newest close time (epoch ms) seen of each symbol."""
        with self._lock:
            return dict(self._close_ms)

    def collect(self) -> list[GaugeMetricFamily]:
        now = self.clock()
        help_text = "Seconds since the close of the newest kline seen of the symbol"
        family = GaugeMetricFamily("klinestream_last_kline_age_seconds", help_text, labels=["symbol"])
        for symbol, close_ms in sorted(self.latest().items()):
            family.add_metric([symbol], now - (close_ms + 1) / 1000.0)
        return [family]


class Readiness:
    """Named checks run every ``interval`` seconds on a daemon thread; :meth:`snapshot` reads the latest."""

    def __init__(self, checks: Mapping[str, Check], interval: float = 2.0, timeout: float = 3.0,
                 registry: CollectorRegistry | None = None) -> None:  # fmt: skip
        self.checks, self.interval, self.timeout = dict(checks), interval, timeout
        self._results: dict[str, CheckResult] = {}
        self._running: dict[str, tuple[Future[str | None], float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.checks)), thread_name_prefix="ready-check")
        self._thread: threading.Thread | None = None
        self._gauge = None
        if registry is not None:
            self._gauge = Gauge("klinestream_check_ok", "1 when the readiness check passed on its last run",
                                ["check"], registry=registry)  # fmt: skip

    def start(self) -> Readiness:
        self._thread = threading.Thread(target=self._loop, name="readiness", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run_once(self) -> None:
        """Collect finished checks, time out stuck ones, start the ones not running."""
        now = time.monotonic()
        for name, check in self.checks.items():
            running = self._running.get(name)
            if running is not None:
                future, started = running
                if future.done():
                    self._record(name, future)
                    del self._running[name]
                elif now - started > self.timeout:
                    self._set(name, CheckResult(False, f"no answer within {self.timeout:g} s", time.time()))
                    continue  # still stuck: do not start a second one beside it
                else:
                    continue
            self._running[name] = (self._pool.submit(check), now)

    def _record(self, name: str, future: Future[str | None]) -> None:
        error = future.exception()
        if error is None:
            self._set(name, CheckResult(True, future.result() or "ok", time.time()))
        else:
            self._set(name, CheckResult(False, f"{type(error).__name__}: {error}"[:300], time.time()))

    def _set(self, name: str, result: CheckResult) -> None:
        with self._lock:
            changed = name in self._results and self._results[name].ok != result.ok
            self._results[name] = result
        if self._gauge is not None:
            self._gauge.labels(name).set(1.0 if result.ok else 0.0)
        if changed:
            log.log(logging.INFO if result.ok else logging.WARNING, "readiness check=%s ok=%s detail=%s", name,
                    result.ok, result.detail)  # fmt: skip

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            # collect quick checks at once rather than one interval later
            deadline = time.monotonic() + self.interval
            while not self._stop.is_set() and time.monotonic() < deadline:
                if any(f.done() for f, _ in self._running.values()):
                    self.run_once()
                self._stop.wait(0.05)

    def snapshot(self) -> tuple[bool, dict[str, CheckResult]]:
        """(ready, results): ready only when every check has a result and all passed."""
        with self._lock:
            results = dict(self._results)
        ready = all(name in results and results[name].ok for name in self.checks)
        return ready, results


def add_ops_routes(app: web.Application, registry: CollectorRegistry, readiness: Readiness | None = None,
                   started: float | None = None) -> None:  # fmt: skip
    """Add ``/metrics``, ``/health`` and ``/ready`` to ``app`` (``readiness`` None: ready while alive)."""
    began = time.time() if started is None else started

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "uptime_s": round(time.time() - began, 1)})

    async def ready(request: web.Request) -> web.Response:
        if readiness is None:
            return web.json_response({"ready": True, "checks": {}})
        ok, results = readiness.snapshot()
        checks = {name: {"ok": r.ok, "detail": r.detail, "age_s": round(time.time() - r.at, 1)}
                  for name, r in results.items()}  # fmt: skip
        for name in readiness.checks:
            checks.setdefault(name, {"ok": False, "detail": "not checked yet", "age_s": None})
        return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)


class OpsServer:
    """``/metrics``, ``/health`` and ``/ready`` on ``host:port`` (0 = any free port) from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, readiness: Readiness | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:  # fmt: skip
        self.registry, self.readiness, self.host, self.port = registry, readiness, host, port
        self._runner: web.AppRunner | None = None
        self._loop_thread = LoopThread("ops-http")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _start(self) -> None:
        app = web.Application()
        add_ops_routes(app, self.registry, self.readiness)
        self._runner, self.port = await start_site(app, self.host, self.port)
        log.info("metrics listening url=%s/metrics", self.url)

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> OpsServer:
        if self.readiness is not None:
            self.readiness.start()
        self._loop_thread.start(self._start, self._stop)
        return self

    def close(self) -> None:
        self._loop_thread.stop()
        if self.readiness is not None:
            self.readiness.stop()
