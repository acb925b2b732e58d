"""Bring services up, take them down, and report their state.

``up`` is idempotent: a service we started that answers its health check is left alone; one that is still
starting is waited for; a port held by a process that is not ours is an error naming that process. All
services to start are launched first and then waited for together, so they boot in parallel.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from klinestream.stack.process import (
    describe_process,
    exclusive_lock,
    first_error,
    live_process,
    port_open,
    port_owner,
    read_pid_file,
    resident_memory,
    spawn_detached,
    stop_process_tree,
    tail,
)
from klinestream.stack.services import Service
from models.errors import ServiceError

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


class Action(enum.Enum):
    """What ``up`` does with a service, decided from its observed state."""

    LEAVE = "already running"
    WAIT = "starting"
    START = "start"
    CONFLICT = "port taken"


def decide(running: bool, healthy: bool, port_in_use: bool) -> Action:
    """The ``up`` decision: leave a healthy service of ours, wait for one still starting, start a stopped one
    whose ports are free, and refuse when a port is held by something that is not ours."""
    if running:
        return Action.LEAVE if healthy else Action.WAIT
    return Action.CONFLICT if port_in_use else Action.START


class Health(enum.Enum):
    """What ``stack status`` says of a service; only HEALTHY counts as up (its exit code is 0 only then)."""

    HEALTHY = "healthy"
    NOT_ANSWERING = "not answering"
    STOPPED = "stopped"
    FOREIGN = "port taken, not ours"


@dataclass(frozen=True)
class ServiceState:
    """A snapshot of one service, for ``status`` and for the ``up`` decision."""

    name: str
    host: str
    port: int
    pid: int | None
    healthy: bool
    rss_bytes: int | None
    foreign: str | None  # "pid 123 (java) holds port 9092" when a port is taken by a process not ours
    uptime_s: float | None
    notes: str

    @property
    def health(self) -> Health:
        if self.pid is None:
            return Health.FOREIGN if self.foreign else Health.STOPPED
        return Health.HEALTHY if self.healthy else Health.NOT_ANSWERING


def all_healthy(states: Sequence[ServiceState]) -> bool:
    """True when every service is ours, running and answering its health check."""
    return all(state.health is Health.HEALTHY for state in states)


def _ours(service: Service) -> psutil.Process | None:
    return live_process(read_pid_file(service.pid_path))


def _foreign_holder(service: Service) -> str | None:
    for port in (service.port, *service.extra_ports):
        if port_open(service.host, port):
            return f"{describe_process(port_owner(port))} holds port {port}"
    return None


def inspect(service: Service) -> ServiceState:
    """Observe ``service``: our process (from its pid file), its health, memory, and foreign port holders."""
    proc = _ours(service)
    healthy = proc is not None and service.healthy()
    rss = resident_memory(proc) if proc is not None else None
    uptime = time.time() - proc.create_time() if proc is not None else None
    foreign = None if proc is not None else _foreign_holder(service)
    return ServiceState(
        name=service.name,
        host=service.host,
        port=service.port,
        pid=proc.pid if proc is not None else None,
        healthy=healthy,
        rss_bytes=rss,
        foreign=foreign,
        uptime_s=uptime,
        notes=service.notes(),
    )


class StackStartError(ServiceError):
    """A service did not become healthy; ``log_tail`` holds the end of its log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did for one service and how long it took to answer (0 when it was already running)."""

    name: str
    action: Action
    seconds: float
    rss_bytes: int


Report = Callable[[str], None]


def _stack_lock(services: Sequence[Service]) -> contextlib.AbstractContextManager[None]:
    """One ``up`` or ``down`` at a time per stack folder (a second caller waits, then finds them running)."""
    if not services:
        return contextlib.nullcontext()
    return exclusive_lock(services[0].settings.stack_dir / ".stack.lock")


def up(services: Sequence[Service], report: Report = log.info) -> list[UpResult]:
    """Start the stopped services, wait until every one answers; raise StackStartError on the first failure."""
    with _stack_lock(services):
        return _up(services, report)


def _up(services: Sequence[Service], report: Report) -> list[UpResult]:
    started: dict[str, float] = {}
    actions: dict[str, Action] = {}
    for service in services:
        proc = _ours(service)
        in_use = proc is None and _foreign_holder(service) is not None
        action = decide(proc is not None, proc is not None and service.healthy(), in_use)
        actions[service.name] = action
        if action is Action.CONFLICT:
            raise StackStartError(
                f"{service.name}: {_foreign_holder(service)}, which klinestream did not start; stop it, "
                f"or point the settings at another port"
            )
        if action is Action.START:
            service.prepare()
            spawn_detached(
                service.command(),
                cwd=service.root,
                env=service.env(),
                log_path=service.log_path,
                pid_path=service.pid_path,
            )
            report(f"{service.name}: started (log {service.log_path})")
        started[service.name] = time.monotonic() if action is not Action.LEAVE else 0.0
    seconds = _wait_healthy([s for s in services if actions[s.name] is not Action.LEAVE], started, report)
    for service in services:  # the admin path, at every up: a changed secrets file takes effect here
        for line in service.provision():
            report(f"{service.name}: {line}")
    results = []
    for service in services:
        proc = _ours(service)
        rss = resident_memory(proc) if proc is not None else 0
        results.append(UpResult(service.name, actions[service.name], seconds.get(service.name, 0.0), rss))
    return results


def _wait_healthy(pending: list[Service], started: dict[str, float], report: Report) -> dict[str, float]:
    """Poll every pending service until each answers; a service that exits or times out is stopped and fails."""
    seconds: dict[str, float] = {}
    while pending:
        for service in list(pending):
            elapsed = time.monotonic() - started[service.name]
            if service.healthy():
                seconds[service.name] = elapsed
                pending.remove(service)
                report(f"{service.name}: healthy on {service.host}:{service.port} after {elapsed:.1f} s")
            elif _ours(service) is None:
                cause = first_error(service.log_path)
                raise StackStartError(
                    f"{service.name} exited before answering on port {service.port}"
                    + (f" ({cause})" if cause else "")
                    + f"; see {service.log_path}",
                    tail(service.log_path),
                )
            elif elapsed > service.start_timeout:
                log_tail = tail(service.log_path)
                stop(service)
                raise StackStartError(
                    f"{service.name} did not answer on port {service.port} within {service.start_timeout:.0f} s "
                    f"and was stopped; see {service.log_path}",
                    log_tail,
                )
        if pending:
            time.sleep(POLL_SECONDS)
    return seconds


@dataclass(frozen=True)
class DownResult:
    """What ``down`` did for one service."""

    name: str
    stopped_pid: int | None
    killed: tuple[int, ...]
    seconds: float


def stop(service: Service) -> DownResult:
    """Stop the process tree recorded in the service's pid file (if it is still ours) and remove the file."""
    began = time.monotonic()
    proc = _ours(service)
    killed: list[int] = []
    if proc is not None:
        killed = stop_process_tree(proc, service.stop_signal, timeout=service.stop_timeout)
    service.pid_path.unlink(missing_ok=True)
    return DownResult(service.name, proc.pid if proc else None, tuple(killed), time.monotonic() - began)


def down(services: Sequence[Service]) -> list[DownResult]:
    """Stop ``services`` in reverse start order."""
    with _stack_lock(services):
        return [stop(service) for service in reversed(services)]
