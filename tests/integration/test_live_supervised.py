"""``kill -9`` of a supervised stream: ``klinestream stack up live`` runs it under the supervisor, the test kills
its whole process group mid-replay, the supervisor starts it again, and its decisions, orders and positions
equal, column for column, those of an uninterrupted run of the same input (the crash-recovery test's
exactly-once check); ``klinestream stack status`` shows the restart; ``stack down live`` stops everything
(issue 15, must-show 2).

Throwaway everything: a home of its own (its ``jvm/`` linked to the shared jars), topics, keyspaces, query
name and ports; the supervised stream uses the shared Kafka and Cassandra."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from models.settings import Settings
from tests.integration.live_helpers import live_topics, seed
from tests.integration.live_process_helpers import KLINESTREAM, free_port, process_env, wait_until
from tests.integration.live_stream_helpers import keyspace_dropped_after, new_keyspace, read_rows
from tests.integration.test_live_crash_recovery import TABLES, DecisionCounter, run_to_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WARMUP, HOURS = 33, 80
TRADER = "paper-BTCUSDT"


def stream_program(home: Path) -> dict[str, Any]:
    state = json.loads((home / "stack" / "live" / "state.json").read_text())
    return next(p for p in state["programs"] if p["name"] == "stream")


def wait(predicate: Any, timeout: float, what: str, home: Path) -> None:
    logs = home / "stack" / "live"
    wait_until(predicate, timeout, what, lambda: "\n".join(p.read_text(errors="replace")[-2500:]
                                                           for p in logs.glob("*.log")))  # fmt: skip


def klinestream(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KLINESTREAM, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_a_supervised_stream_killed_with_sigkill_is_restarted_and_writes_each_decision_once(
    settings: Settings, stack: Any, tmp_path: Path
) -> None:
    from tests.trader_fakes import make_policy, market, to_klines

    stack.require("kafka", "cassandra", "spark")
    frame = market(WARMUP + HOURS, seed=5)
    model_dir = make_policy(frame, seed=9).save(tmp_path / "models" / "1")
    klines = sorted(to_klines(frame), key=lambda k: (k.open_time, k.symbol))
    home = tmp_path / "home"
    (home / "stack").mkdir(parents=True)
    (home / "jvm").symlink_to(settings.jvm_dir)
    name = f"test-supervised-{uuid.uuid4().hex[:8]}"
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with live_topics(settings) as topics:
        seed(topics, klines)
        calm = topics.model_copy(update={"cassandra_keyspace": new_keyspace("test_supervised_calm")})
        with keyspace_dropped_after(calm):
            try:
                run_to_end(calm, f"{name}-calm", model_dir, tmp_path / "calm.log")
            finally:
                shutil.rmtree(settings.home / "checkpoints" / f"{name}-calm", ignore_errors=True)
            rows["calm"] = {table: read_rows(calm, table, TRADER) for table in TABLES}
        killed = topics.model_copy(update={"cassandra_keyspace": new_keyspace("test_supervised")})
        env = process_env(killed, home=home, stream_metrics_port=free_port(), live_programs="stream",
                          live_stream_args=f"--name {name} --model-dir {model_dir} --max-offsets 50")  # fmt: skip
        with keyspace_dropped_after(killed):
            up = klinestream(env, "stack", "up", "live")
            try:
                assert up.returncode == 0, up.stdout + up.stderr
                first_pid = stream_program(home)["pid"]
                count = DecisionCounter(killed)
                try:
                    wait(lambda: count() >= 25, 300, "25 decisions before the kill", home)
                    group = os.getpgid(first_pid)
                    before = count()
                    os.killpg(group, signal.SIGKILL)  # the Python driver and Spark's JVM, no shutdown hook
                    wait(lambda: stream_program(home)["restarts"] == 1 and stream_program(home)["pid"], 60,
                         "the supervisor's restart", home)  # fmt: skip
                    assert not psutil.pid_exists(first_pid) and stream_program(home)["pid"] != first_pid
                    assert stream_program(home)["last_exit"] == -signal.SIGKILL
                    assert before < HOURS, "the kill came after the replay was done"
                    wait(lambda: count() >= HOURS, 420, f"{HOURS} decisions after the restart", home)
                finally:
                    count.close()
                time.sleep(3)  # the last batch's checkpoint and commit
                status = klinestream({**env, "COLUMNS": "200"}, "stack", "status", timeout=180)
                line = next(s for s in status.stdout.splitlines() if re.search(r"\bstream\b", s) and "│" in s)
                cells = [c.strip() for c in line.strip("│┃ ").split("│")]
                assert cells[0] == "stream" and cells[2] == "1" and cells[3] == str(-signal.SIGKILL), status.stdout
                rows["killed"] = {table: read_rows(killed, table, TRADER) for table in TABLES}
                supervised_pid = stream_program(home)["pid"]
            finally:
                down = klinestream(env, "stack", "down", "live")
            assert down.returncode == 0, down.stdout + down.stderr
            assert not psutil.pid_exists(supervised_pid), "stack down left the supervised stream running"
            assert stream_program(home)["pid"] is None

    first = int(frame["open_time"].min()) + WARMUP * 3_600_000
    hours = [d["open_time"] for d in rows["killed"]["decisions"]]
    assert hours == list(range(first, first + HOURS * 3_600_000, 3_600_000)), "an hour missing or twice"
    for table in TABLES:
        calm_rows, killed_rows = rows["calm"][table], rows["killed"][table]
        assert len(killed_rows) == len(calm_rows), f"{table} row counts differ"
        for crashed_row, calm_row in zip(killed_rows, calm_rows, strict=True):
            differing = {k: (crashed_row[k], calm_row[k]) for k in calm_row if crashed_row[k] != calm_row[k]}
            assert not differing, f"{table} at open_time={calm_row['open_time']} differs: {differing}"
