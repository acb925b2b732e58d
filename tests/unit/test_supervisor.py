"""The live-process supervisor on small real programs: a crashing one is restarted with a doubling backoff and
its restarts counted in the state file, SIGKILL of a healthy one restarts it, and stopping stops them all."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import psutil

from klinestream.stack.supervisor import Program, Supervisor, live_programs
from models.settings import load_settings
from tests import waiting


def wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    waiting.wait_for(predicate, timeout, interval=0.05)


def test_crashes_are_restarted_with_backoff_and_everything_stops(tmp_path: Path) -> None:
    crash = Program("crash", (sys.executable, "-c", "import sys; sys.exit(3)"))
    sleeper = Program("sleeper", (sys.executable, "-c", "import time; time.sleep(600)"))
    supervisor = Supervisor([crash, sleeper], tmp_path, backoff_initial=0.2, backoff_max=0.8, healthy_after=30)
    thread = threading.Thread(target=supervisor.run, kwargs={"tick": 0.05}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: supervisor.states["crash"].restarts >= 3)
        state = supervisor.states["crash"]
        assert state.last_exit == 3 and state.crashes_in_a_row >= 3
        sleeper_pid = supervisor.states["sleeper"].pid
        assert sleeper_pid is not None
        os.kill(sleeper_pid, signal.SIGKILL)
        wait_for(lambda: supervisor.states["sleeper"].restarts == 1 and supervisor.states["sleeper"].pid)
        assert supervisor.states["sleeper"].last_exit == -signal.SIGKILL
        written = json.loads((tmp_path / "state.json").read_text())
        assert {p["name"]: p["restarts"] for p in written["programs"]}["sleeper"] == 1
        new_pid = supervisor.states["sleeper"].pid
    finally:
        supervisor.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert new_pid is not None and not psutil.pid_exists(new_pid)
    assert all(p["pid"] is None for p in json.loads((tmp_path / "state.json").read_text())["programs"])


def test_the_live_programs_follow_the_settings(tmp_path: Path) -> None:
    online = load_settings(home=tmp_path, binance_base_url=None)
    assert [p.name for p in live_programs(online)] == ["ingestor", "stream", "dashboard"]
    offline = load_settings(home=tmp_path, binance_base_url="http://127.0.0.1:8901", data_dir=tmp_path,
                            telegram_bot_token="1:x", telegram_chat_ids="5", stream_metrics_port=0)  # fmt: skip
    programs = {p.name: p for p in live_programs(offline, stream_args="--max-offsets 50")}
    assert list(programs) == ["simulator", "ingestor", "stream", "dashboard", "bot"]
    assert "8901" in programs["simulator"].command and programs["stream"].command[-2:] == ("--max-offsets", "50")
    assert programs["stream"].health_url is None and programs["bot"].health_url is None
