"""Pid files, process groups and ports of the local stack, on real (tiny) processes."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from klinestream.stack.process import (
    PidRecord,
    first_error,
    host_port_from_bootstrap,
    host_port_from_url,
    live_process,
    port_open,
    port_owner,
    read_pid_file,
    resident_memory,
    spawn_detached,
    stop_process_tree,
    tail,
    write_pid_file,
)
from tests.waiting import wait_for

# a parent that starts two children and waits: a miniature `airflow standalone`
_TREE = "sleep 60 & sleep 60 & wait"
# the same, but every member ignores SIGTERM
_STUBBORN = "trap '' TERM; (trap '' TERM; sleep 60) & sleep 60 & wait"


def test_pid_file_round_trips_and_a_missing_or_corrupt_file_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "svc" / "svc.pid"
    record = PidRecord(pid=123, create_time=1_700_000_000.5, command=("java", "-cp", "x"))
    write_pid_file(path, record)
    assert read_pid_file(path) == record
    assert read_pid_file(tmp_path / "absent.pid") is None
    path.write_text("{not json")
    assert read_pid_file(path) is None


def test_a_record_is_live_only_while_its_pid_has_the_same_start_time() -> None:
    me = psutil.Process()
    assert live_process(PidRecord(os.getpid(), me.create_time(), ("pytest",))) is not None
    # same pid, other start time: the pid was reused by another process
    assert live_process(PidRecord(os.getpid(), me.create_time() - 1000, ("pytest",))) is None
    assert live_process(None) is None


def _spawn(tmp_path: Path, script: str) -> psutil.Process:
    record = spawn_detached(
        ["sh", "-c", script], cwd=tmp_path, env=os.environ, log_path=tmp_path / "s.log", pid_path=tmp_path / "s.pid"
    )
    proc = live_process(read_pid_file(tmp_path / "s.pid"))
    assert proc is not None and proc.pid == record.pid
    wait_for(lambda: len(proc.children(recursive=True)) >= 2, 5, interval=0.05, message="the tree did not start")
    return proc


def test_spawned_service_runs_in_its_own_session_and_stopping_leaves_no_child(tmp_path: Path) -> None:
    proc = _spawn(tmp_path, _TREE)
    tree = [proc, *proc.children(recursive=True)]
    assert len(tree) == 3
    assert os.getsid(proc.pid) == proc.pid != os.getsid(0)
    assert resident_memory(proc) > proc.memory_info().rss

    killed = stop_process_tree(proc, timeout=5)

    assert killed == []
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)


def test_processes_that_ignore_sigterm_are_killed_after_the_grace_period(tmp_path: Path) -> None:
    proc = _spawn(tmp_path, _STUBBORN)
    tree = [proc, *proc.children(recursive=True)]
    time.sleep(0.2)  # let the shells install their traps

    killed = stop_process_tree(proc, timeout=0.5, grace=0.5)

    assert set(killed) >= {proc.pid}
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)


@pytest.mark.parametrize(
    ("servers", "expected"),
    [("127.0.0.1:9092", ("127.0.0.1", 9092)), ("kafka-a:19092, kafka-b:19092", ("kafka-a", 19092))],
)
def test_kafka_bootstrap_servers_give_the_first_host_and_port(servers: str, expected: tuple[str, int]) -> None:
    assert host_port_from_bootstrap(servers) == expected


@pytest.mark.parametrize("servers", ["127.0.0.1", "127.0.0.1:kafka", ":9092"])
def test_malformed_bootstrap_servers_are_refused_with_the_expected_form(servers: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        host_port_from_bootstrap(servers)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("http://localhost:8080/", ("localhost", 8080)),
        ("https://mlflow.internal/api", ("mlflow.internal", 443)),
        ("http://airflow", ("airflow", 80)),
    ],
)
def test_service_urls_give_host_and_port(url: str, expected: tuple[str, int]) -> None:
    assert host_port_from_url(url) == expected


def test_a_url_without_http_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        host_port_from_url("127.0.0.1:5000")


def test_a_listening_port_is_open_and_its_owner_is_found() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_open("127.0.0.1", port)
        owner = port_owner(port)
        if sys.platform == "linux" and owner is not None:
            assert owner.pid == os.getpid()
    assert not port_open("127.0.0.1", port)


def test_tail_returns_the_last_lines_of_a_log(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3) == "line 97\nline 98\nline 99"
    assert tail(tmp_path / "missing.log") == ""


def test_first_error_is_looked_for_since_the_last_start_only(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text(
        "===== 2026 starting: java old\nERROR an old failure\n"
        "===== 2026 starting: java new\nINFO booting\n"
        "ERROR Unable to start acceptor\nCaused by: java.net.BindException: Cannot assign requested address\n"
    )
    assert first_error(log) == "ERROR Unable to start acceptor"
    log.write_text("===== 2026 starting: java\nINFO all good\n")
    assert first_error(log) is None


def test_a_service_gets_default_stop_signals_even_when_its_launcher_ignores_sigint(tmp_path: Path) -> None:
    script = "import signal; print('SIGINT', signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a shell's background job
    try:
        record = spawn_detached(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env=os.environ,
            log_path=tmp_path / "p.log",
            pid_path=tmp_path / "p.pid",
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    psutil.Process(record.pid).wait(timeout=30)
    assert "SIGINT False" in (tmp_path / "p.log").read_text()
