"""The README's two Airflow commands, run verbatim against the stack's running Airflow (its scheduler).

``airflow dags unpause klines_backfill`` then ``airflow backfill create --dag-id klines_backfill ...`` are read
from README.md and run as subprocesses with the environment the stack gives ``airflow standalone``
(``AirflowService.env()``: its ``AIRFLOW_HOME``, database, DAG folder and ``KLINESTREAM_HOME``). The four
hourly runs must succeed, and the lake of the stack's ``KLINESTREAM_HOME`` must then hold those hours,
rewritten by the runs, equal to the source files. The DAG does not catch up, so unpausing it may add one
scheduled run, for the latest hour only.

Cleanup leaves the stack as the test found it for what runs next (``make demo`` in CI): the DAG paused, the
backfill finished or cancelled, and every run the test created deleted (runs of the same hours left by an
earlier run of the README's commands are deleted first, so that the backfill creates them afresh).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from klinestream.stack.services import AirflowService
from models.kline import HOUR_MS
from models.settings import DEFAULT_SYMBOLS, Settings
from tests.integration.conftest import StackHandle
from tests.readme import REPO_ROOT, section_blocks
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "klines_backfill"
FIRST = datetime(2023, 1, 10, tzinfo=UTC)
HOURS = [FIRST + timedelta(hours=h) for h in range(4)]  # --from-date 00:00 … --to-date 03:00, both inclusive


def readme_airflow_commands() -> list[list[str]]:
    blocks = [b for b in section_blocks("Working with it") if b and b[0].startswith("airflow ")]
    assert len(blocks) == 1, "the README's 'Working with it' section has no (or several) airflow blocks"
    return [shlex.split(line) for line in blocks[0]]


class AirflowApi:
    """The stack's Airflow REST API as the admin user."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.airflow_api_url.rstrip("/")
        password = json.loads(AirflowService(settings).password_file.read_text())["admin"]
        token = requests.post(f"{self.base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def call(self, method: str, path: str, **params: Any) -> Any:
        response = requests.request(method, f"{self.base}/api/v2{path}", headers=self.headers, params=params,
                                    timeout=60)  # fmt: skip
        response.raise_for_status()
        return response.json() if response.content else None

    def knows_the_dag(self) -> bool:
        response = requests.get(f"{self.base}/api/v2/dags/{DAG_ID}", headers=self.headers, timeout=60)
        return response.ok

    def runs(self) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/dags/{DAG_ID}/dagRuns", limit=100, order_by="-run_after")["dag_runs"])

    def delete_run(self, run: dict[str, Any]) -> None:
        """Delete a run; a queued or running one (the scheduled hour unpausing added) is marked failed first."""
        path = f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}"
        if run["state"] in ("queued", "running"):
            response = requests.patch(f"{self.base}/api/v2{path}", headers=self.headers, json={"state": "failed"},
                                      timeout=60)  # fmt: skip
            response.raise_for_status()
        self.call("DELETE", path)

    def active_backfills(self) -> list[dict[str, Any]]:
        return [b for b in self.call("GET", "/backfills", dag_id=DAG_ID)["backfills"] if b["completed_at"] is None]


def _scheduler_env(service: AirflowService) -> dict[str, str]:
    """The environment of the running ``airflow standalone`` (what its DAG tasks get)."""
    pid = json.loads(service.pid_path.read_text())["pid"]
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


@pytest.fixture
def airflow(stack: StackHandle, settings: Settings) -> Iterator[tuple[AirflowApi, dict[str, str], Path, set[str]]]:
    stack.require("airflow")
    service = AirflowService(settings)
    running = _scheduler_env(service)
    if not (running.get("KLINESTREAM_DATA_DIR") or running.get("KLINESTREAM_BINANCE_BASE_URL")):
        pytest.skip(
            "the running Airflow has no offline kline source (KLINESTREAM_DATA_DIR or KLINESTREAM_BINANCE_BASE_URL "
            "in its environment), so its runs would fetch from Binance, which this machine cannot reach: start "
            "the stack with `make up`, which points it at ../shared/data/binance_spot_1h"
        )
    lake = Path(running.get("KLINESTREAM_LAKE_DIR") or Path(running["KLINESTREAM_HOME"]) / "lake")
    api = AirflowApi(settings)
    wait_for(lambda: api.knows_the_dag(), 300)  # a fresh Airflow lists the DAG once its processor parsed it
    for backfill in api.active_backfills():
        api.call("PUT", f"/backfills/{backfill['id']}/cancel")
    for run in api.runs():
        if _logical(run) in HOURS:
            api.delete_run(run)
    before = {run["dag_run_id"] for run in api.runs()}
    env = service.env()
    try:
        yield api, env, lake, before
    finally:
        pause = ["airflow", "dags", "pause", DAG_ID]  # the stack's env puts the venv's scripts first on PATH
        subprocess.run(pause, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=True)
        for backfill in api.active_backfills():
            api.call("PUT", f"/backfills/{backfill['id']}/cancel")
        for run in api.runs():
            if run["dag_run_id"] not in before:
                api.delete_run(run)
        assert api.call("GET", f"/dags/{DAG_ID}")["is_paused"] is True and not api.active_backfills()
        assert {run["dag_run_id"] for run in api.runs()} <= before, "a run the test created is left"


def _logical(run: dict[str, Any]) -> datetime | None:
    value = run.get("logical_date")
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_readme_airflow_backfill_create_runs_the_hours_on_the_stack_and_fills_its_lake(
    airflow: tuple[AirflowApi, dict[str, str], Path, set[str]],
) -> None:
    from adapters import lake as kline_lake
    from adapters.kline_files import read_kline_csv

    api, env, lake, before = airflow
    unpause, backfill = readme_airflow_commands()
    assert unpause == ["airflow", "dags", "unpause", DAG_ID] and backfill[:2] == ["airflow", "backfill"]
    started = time.time()
    for argv in (unpause, backfill):
        done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert api.call("GET", f"/dags/{DAG_ID}")["is_paused"] is False

    def ours() -> list[dict[str, Any]]:
        return sorted((r for r in api.runs() if _logical(r) in HOURS), key=lambda r: r["logical_date"])

    def all_succeeded() -> bool:
        runs = ours()
        failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
        assert not failed, f"backfill runs failed: {failed} (see the task logs in the Airflow UI)"
        return len(runs) == len(HOURS) and all(r["state"] == "success" for r in runs)

    wait_for(
        all_succeeded,
        540,
        interval=3,
        message=lambda: (
            f"the backfill's runs did not all succeed in 9 min: {[(r['dag_run_id'], r['state']) for r in ours()]}"
        ),
    )

    runs = ours()
    assert [r["run_type"] for r in runs] == ["backfill"] * len(HOURS)
    starts = [datetime.fromisoformat(r["data_interval_start"].replace("Z", "+00:00")) for r in runs]
    assert starts == HOURS, "each run's data interval is the hour of its logical date"
    # no catch-up: any scheduled run unpausing added is for a recent hour, never one from 2021 onwards
    added = [r for r in api.runs() if r["run_type"] == "scheduled" and r["dag_run_id"] not in before]
    recent = datetime.now(UTC) - timedelta(hours=3)
    assert len(added) <= 1 and all((_logical(r) or FIRST) > recent for r in added), added

    start_ms, end_ms = int(FIRST.timestamp() * 1000), int(FIRST.timestamp() * 1000) + len(HOURS) * HOUR_MS
    shared = REPO_ROOT.parent / "shared" / "data" / "binance_spot_1h"
    for symbol in DEFAULT_SYMBOLS:
        for zone in ("raw", "validated"):
            part = lake / zone / f"symbol={symbol}" / "interval=1h" / "date=2023-01-10" / "part.parquet"
            assert part.stat().st_mtime >= started, f"{zone} {symbol} 2023-01-10 was not rewritten by the runs"
        stored = kline_lake.read_range(lake, "validated", [symbol], start_ms, end_ms)
        assert list(stored["open_time"]) == list(range(start_ms, end_ms, HOUR_MS)), symbol
        if (shared / f"{symbol}.csv").exists():
            source = read_kline_csv(shared / f"{symbol}.csv", symbol)
            source = source[(source["open_time"] >= start_ms) & (source["open_time"] < end_ms)]
            assert stored["close"].tolist() == source["close"].tolist(), symbol
