"""Detached service processes: pid files, process groups, ports and resident memory.

Each service runs in its own session (``start_new_session=True``) so it outlives the CLI that started it,
and its pid file records the pid together with the process's start time, so a recycled pid is never taken
for ours. Stopping signals the whole process group (SIGTERM, then SIGKILL after a timeout) and also every
descendant seen before the signal, so children that changed group are not orphaned.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_START_MARKER = "===== "
_ERROR_LINE = re.compile(r"\b(ERROR|FATAL|CRITICAL|\w*Exception|\w*Error)\b")


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds: enough to recognise the process we started, even after a pid is reused."""

    pid: int
    create_time: float
    command: tuple[str, ...]


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the duration of the block.

    Engineers and test sessions share a working tree: without it two of them could both see a service
    stopped and both start it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_pid_file(path: Path, record: PidRecord) -> None:
    """Write ``record`` atomically (write to a temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(path)


def read_pid_file(path: Path) -> PidRecord | None:
    """The record in ``path``; None when the file is missing or unreadable (a stale file is not an error)."""
    try:
        raw = json.loads(path.read_text())
        return PidRecord(pid=int(raw["pid"]), create_time=float(raw["create_time"]), command=tuple(raw["command"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable pid file %s: %s", path, exc)
        return None


def live_process(record: PidRecord | None) -> psutil.Process | None:
    """The running process ``record`` describes, or None if it exited or its pid now belongs to another."""
    if record is None:
        return None
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def spawn_detached(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path, pid_path: Path
) -> PidRecord:
    """Start ``command`` in a new session, its output appended to ``log_path``; record it in ``pid_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        out.write(f"\n{_START_MARKER}{time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting: {' '.join(command)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_stop_signals,
        )
    record = PidRecord(pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(), command=tuple(command))
    write_pid_file(pid_path, record)
    return record


def _default_stop_signals() -> None:
    """In the child, before exec: a shell's background job inherits SIGINT ignored, and ``airflow standalone``
    only shuts its components down on SIGINT; give the service default stop signals whoever launched it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def process_tree(proc: psutil.Process) -> list[psutil.Process]:
    """``proc`` and all its living descendants."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_process_tree(
    proc: psutil.Process, first_signal: signal.Signals = signal.SIGTERM, timeout: float = 20.0, grace: float = 10.0
) -> list[int]:
    """Stop ``proc``, its process group and every descendant; return the pids that needed SIGKILL.

    ``first_signal`` goes to ``proc`` alone (its own orderly shutdown, which stops its children); after
    ``timeout`` seconds, or as soon as it exits, whatever is left of the group and of the descendants seen
    before gets SIGTERM, and SIGKILL ``grace`` seconds later.
    """
    tree = process_tree(proc)
    try:
        pgid: int | None = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    try:
        proc.send_signal(first_signal)
    except psutil.NoSuchProcess:
        log.debug("pid %s exited before it was signalled", proc.pid)
    psutil.wait_procs([proc], timeout=timeout)
    left = _still_alive(tree, pgid)
    if left:
        _signal_all(pgid, left, signal.SIGTERM)
        _, left = psutil.wait_procs(left, timeout=grace)
        left += [p for p in _group_members(pgid) if p not in left]
    if left:
        log.warning("killing %d processes that ignored SIGTERM: %s", len(left), [p.pid for p in left])
        _signal_all(pgid, left, signal.SIGKILL)
        psutil.wait_procs(left, timeout=5)
    return [p.pid for p in left]


def _still_alive(tree: Sequence[psutil.Process], pgid: int | None) -> list[psutil.Process]:
    alive = [p for p in tree if _alive(p)]
    return alive + [p for p in _group_members(pgid) if p not in alive]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal_all(pgid: int | None, procs: Sequence[psutil.Process], sig: signal.Signals) -> None:
    if pgid is not None and pgid != os.getpgid(0):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            log.debug("process group %s already gone", pgid)
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            continue


def _group_members(pgid: int | None) -> list[psutil.Process]:
    if pgid is None:
        return []
    members = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and _alive(p):
                members.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def resident_memory(proc: psutil.Process) -> int:
    """Resident memory in bytes of ``proc`` and all its descendants."""
    total = 0
    for p in process_tree(proc):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


# --- ports -----------------------------------------------------------------------------------------


def host_port_from_bootstrap(servers: str) -> tuple[str, int]:
    """Host and port of the first ``host:port`` in a Kafka bootstrap list such as ``a:9092,b:9092``."""
    first = servers.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port in the Kafka bootstrap servers, got {servers!r}")
    return host, int(port)


def host_port_from_url(url: str) -> tuple[str, int]:
    """Host and port of an ``http(s)://host[:port]/...`` URL (the scheme's port when none is given)."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"expected an http(s)://host:port URL, got {url!r}")
    return parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme]


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_owner(port: int) -> psutil.Process | None:
    """The process listening on TCP ``port`` on this machine, when the OS lets us see it."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                return psutil.Process(conn.pid)
            except psutil.NoSuchProcess:
                return None
    return None


def describe_process(proc: psutil.Process | None) -> str:
    """``pid 123 (java)`` — for messages about a port held by someone else."""
    if proc is None:
        return "an unknown process"
    try:
        return f"pid {proc.pid} ({proc.name()})"
    except psutil.NoSuchProcess:
        return f"pid {proc.pid}"


def _read_end(path: Path, size: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    return "\n".join(_read_end(path, 64 * 1024).splitlines()[-lines:])


def first_error(path: Path) -> str | None:
    """The first line that reports an error since the service's last start in its log, if any."""
    text = _read_end(path, 1024 * 1024)
    start = text.rfind(_START_MARKER)
    for line in text[max(start, 0) :].splitlines()[1:]:
        if _ERROR_LINE.search(line):
            return line.strip()[:300]
    return None
