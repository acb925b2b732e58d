"""Supervising the live processes without Docker: restart on crash with backoff, stop them all cleanly.

``klinestream supervise`` (started detached by ``klinestream stack up --live``) runs the live path's
programs — the exchange simulator (offline only), the ingestor, the stream, the dashboard and the Telegram
bot (when a token is set) — each in its own session, its output appended to ``<home>/stack/live/<name>.log``.
A program that exits, whatever its exit code, is started again after a backoff that doubles from
``backoff_initial`` to ``backoff_max`` seconds with each crash in a row (reset once it has run
``healthy_after`` seconds), like compose's ``restart: unless-stopped``. SIGTERM (``stack down``) stops every
program (SIGTERM to its process group, SIGKILL after a timeout) and then the supervisor.

The state — pid, restarts, last exit code, start time of each program — is written atomically to
``<home>/stack/live/state.json`` after every change; ``stack status`` reads it and asks each program's
``/health`` and ``/ready``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import requests

from klinestream.stack.process import stop_process_tree
from models.settings import Settings

log = logging.getLogger(__name__)

KLINESTREAM = str(Path(sys.executable).with_name("klinestream"))
LIVE_DIR = "live"
PROGRAM_NAMES = ("simulator", "ingestor", "stream", "dashboard", "bot")


@dataclass(frozen=True)
class Program:
    name: str
    command: tuple[str, ...]
    health_url: str | None = None
    """``…/health`` of the program's ops endpoint; None: alive = running."""


@dataclass
class ProgramState:
    name: str
    pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    started_at: float | None = None
    next_start: float = 0.0
    crashes_in_a_row: int = 0
    health_url: str | None = None


def live_dir(settings: Settings) -> Path:
    return settings.stack_dir / LIVE_DIR


def _loopback(url: str | None) -> bool:
    return bool(url) and urlsplit(url or "").hostname in ("127.0.0.1", "localhost")


def live_programs(settings: Settings, only: Sequence[str] = (), stream_args: str | None = None) -> list[Program]:
    """The live programs of ``settings``: ``only`` those named (default ``KLINESTREAM_LIVE_PROGRAMS``; empty =
    all that apply), the stream with ``stream_args`` (default ``KLINESTREAM_LIVE_STREAM_ARGS``)."""
    only = tuple(only) or settings.live_programs
    stream_args = settings.live_stream_args if stream_args is None else stream_args
    host = settings.metrics_host
    programs = []
    if _loopback(settings.binance_base_url) and settings.data_dir is not None:  # offline: the simulator too
        port = str(urlsplit(settings.binance_base_url or "").port or settings.simulator_port)
        programs.append(Program("simulator", (KLINESTREAM, "simulator", "--data-dir", str(settings.data_dir), "--port",
                                              port), f"http://127.0.0.1:{port}/health"))  # fmt: skip
    programs.append(Program("ingestor", (KLINESTREAM, "ingest"), _ops_url(host, settings.ingestor_metrics_port)))
    programs.append(Program("stream", (KLINESTREAM, "stream", *shlex.split(stream_args)),
                            _ops_url(host, settings.stream_metrics_port)))  # fmt: skip
    port = str(settings.dashboard_port)
    programs.append(Program("dashboard", (KLINESTREAM, "dashboard", "--port", port), f"http://127.0.0.1:{port}/health"))
    if settings.telegram_bot_token is not None:
        programs.append(Program("bot", (KLINESTREAM, "bot")))
    unknown = set(only) - set(PROGRAM_NAMES)
    if unknown:
        raise ValueError(f"unknown live program(s) {sorted(unknown)}; choose from {list(PROGRAM_NAMES)}")
    return [p for p in programs if not only or p.name in only]


def _ops_url(host: str, port: int) -> str | None:
    return f"http://{host}:{port}/health" if port else None


@dataclass
class Supervisor:
    """Runs ``programs`` until :meth:`stop` (see the module docstring)."""

    programs: list[Program]
    folder: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    healthy_after: float = 60.0
    stop_timeout: float = 30.0

    def __post_init__(self) -> None:
        self.states = {p.name: ProgramState(p.name, health_url=p.health_url) for p in self.programs}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()

    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    def run(self, tick: float = 0.5) -> None:
        """Start every program, restart the ones that exit, until :meth:`stop`; then stop them all."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log.info("supervisor pid=%d programs=%s", os.getpid(), [p.name for p in self.programs])
        try:
            while not self._stop.is_set():
                self.step()
                self._stop.wait(tick)
        finally:
            self.stop_all()

    def stop(self) -> None:
        self._stop.set()

    def step(self) -> None:
        """Reap programs that exited (scheduling their restart) and start those that are due."""
        now, changed = time.time(), False
        for program in self.programs:
            state, proc = self.states[program.name], self._procs.get(program.name)
            if proc is not None and proc.poll() is not None:
                changed = True
                self._exited(state, proc.returncode, now)
                del self._procs[program.name]
            if program.name not in self._procs and now >= state.next_start and not self._stop.is_set():
                changed = True
                self._start(program, state, now)
        if changed:
            self.write_state()

    def _exited(self, state: ProgramState, code: int, now: float) -> None:
        ran = now - (state.started_at or now)
        state.crashes_in_a_row = 1 if ran >= self.healthy_after else state.crashes_in_a_row + 1
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (state.crashes_in_a_row - 1))
        state.last_exit, state.pid, state.next_start = code, None, now + delay
        log.warning("program exited name=%s code=%s after %.0f s: restart in %.1f s", state.name, code, ran, delay)

    def _start(self, program: Program, state: ProgramState, now: float) -> None:
        log_path = self.folder / f"{program.name}.log"
        with log_path.open("ab") as out:
            out.write(
                f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting: {shlex.join(program.command)}\n".encode()
            )
            out.flush()
            proc = subprocess.Popen(list(program.command), env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        if state.started_at is not None:
            state.restarts += 1
        self._procs[program.name] = proc
        state.pid, state.started_at = proc.pid, now
        log.info("program started name=%s pid=%d restarts=%d", program.name, proc.pid, state.restarts)

    def stop_all(self) -> None:
        """SIGTERM each program's process group (SIGKILL after ``stop_timeout``), newest first."""
        for name in reversed([p.name for p in self.programs]):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                stop_process_tree(psutil.Process(proc.pid), signal.SIGTERM, timeout=self.stop_timeout, grace=5)
            proc.wait(timeout=10)
            self.states[name].pid = None
            log.info("program stopped name=%s", name)
        self.write_state()

    def write_state(self) -> None:
        body = {"supervisor_pid": os.getpid(), "updated_at": time.time(),
                "programs": [asdict(self.states[p.name]) for p in self.programs]}  # fmt: skip
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1))
        tmp.replace(self.state_path)


def read_state(settings: Settings) -> dict[str, object] | None:
    """The supervisor's last written state (None when it never ran here)."""
    path = live_dir(settings) / "state.json"
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def probe(health_url: str | None) -> tuple[str, str]:
    """(health, ready) of a program's ops endpoint: ``ok``, ``down`` or ``not ready: <why>``; ``-`` with none."""
    if health_url is None:
        return "-", "-"
    try:
        health = "ok" if requests.get(health_url, timeout=2).ok else "down"
    except requests.RequestException:
        return "down", "down"
    try:
        response = requests.get(health_url.rsplit("/", 1)[0] + "/ready", timeout=2)
        body = response.json()
    except (requests.RequestException, ValueError):
        return health, "down"
    if response.ok:
        return health, "ready"
    failing = [name for name, check in body.get("checks", {}).items() if not check.get("ok")]
    return health, "not ready: " + ", ".join(failing)
