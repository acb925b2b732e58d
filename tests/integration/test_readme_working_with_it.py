"""The README's "Working with it" block, run verbatim, in README order, against the real stack.

Each command line is read from README.md (``tests/readme.py``) and run as a subprocess from the repository
root, exactly as a user would type it (``~`` expanded as the shell would, to a home whose ``~/klines`` is the
folder of real klines), with ``KLINESTREAM_*`` settings that point it at throw-away state:
a temporary ``KLINESTREAM_HOME`` (its lake, models and Spark checkpoints), fresh Kafka topics, a fresh
Cassandra keyspace and a fresh registered model. The tests run in file order and hand their results on
(the trained policy → the champion → the stream; the ingested klines → the stream):

backfill → validate → train --register (logged and registered as the challenger) → promote --auto
→ simulator (REST + websocket) → ingest (into the test topic, SIGTERM) → stream (champion's decisions in
the test keyspace, SIGTERM, the whole process group killed).

Long-running commands start in their own session and their process group is killed in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd
import psutil
import pytest
import requests

from models.kline import HOUR_MS, parse_record
from models.settings import DEFAULT_SYMBOLS, Settings
from tests.integration.conftest import StackHandle
from tests.integration.live_helpers import read_topic
from tests.market_data import assert_validated_equals_files
from tests.readme import REPO_ROOT, klinestream_command
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VENV_BIN = Path(sys.executable).parent
JAN_1, FEB_1 = 1_672_531_200_000, 1_675_209_600_000  # 2023-01-01, 2023-02-01 UTC
SHARED = REPO_ROOT.parent / "shared" / "data" / "binance_spot_1h"
SIMULATOR = "http://127.0.0.1:8900"  # the README's simulator line uses the default port
TRADER = "paper-BTCUSDT"  # <mode>-<traded symbol>
#: hours of all five symbols the ingest test leaves in the topic: the trader's warm-up (24 h) and window, and more
INGESTED_HOURS = 96


@dataclass
class Workspace:
    """The throw-away state the README's commands run against, and what each test hands to the next."""

    home: Path
    settings: Settings
    env: dict[str, str]
    logs: Path
    user_home: Path
    """What ``~`` stands for in the README's lines: its ``klines`` is the folder of real klines."""
    champion: int | None = None
    ingested: list[Any] = field(default_factory=list)
    stream_exit: int | None = None
    stream_orphans: list[str] | None = None
    run_ids: list[str] = field(default_factory=list)
    """MLflow runs the commands logged (deleted at the end, like the registered model)."""


@pytest.fixture(scope="module")
def ws(stack: StackHandle, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    if not (SHARED / "BTCUSDT.csv").exists():
        pytest.skip("the README's commands need a folder of real klines (this project keeps one at ../shared in CI)")
    from adapters.cassandra.provision import provision_keyspace
    from adapters.kafka import delete_topics, ensure_topics

    stack.require("kafka", "cassandra", "mlflow", "spark")
    home = tmp_path_factory.mktemp("readme-home")
    (home / "jvm").symlink_to(settings.jvm_dir, target_is_directory=True)  # the Spark connector jars
    tag = uuid.uuid4().hex[:10]
    ours = settings.model_copy(
        update={
            "home": home,
            "lake_dir": None,
            "data_dir": None,
            "kafka_topic_klines": f"test.readme.{tag}",
            "kafka_topic_dlq": f"test.readme-dlq.{tag}",
            "cassandra_keyspace": f"test_readme_{tag}",
            "mlflow_model_name": f"klinestream-readme-test-{tag}",
            "device": "cpu",
            "binance_base_url": SIMULATOR,
            "binance_ws_url": SIMULATOR.replace("http", "ws"),
        }
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINESTREAM_")}
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "KLINESTREAM_HOME": str(home),
            "KLINESTREAM_SECRETS_FILE": str(settings.secrets_path),  # the stack's passwords (its home is not ours)
            "KLINESTREAM_KAFKA_BOOTSTRAP_SERVERS": ours.kafka_bootstrap_servers,
            "KLINESTREAM_KAFKA_TOPIC_KLINES": ours.kafka_topic_klines,
            "KLINESTREAM_KAFKA_TOPIC_DLQ": ours.kafka_topic_dlq,
            "KLINESTREAM_CASSANDRA_HOSTS": ",".join(ours.cassandra_hosts),
            "KLINESTREAM_CASSANDRA_PORT": str(ours.cassandra_port),
            "KLINESTREAM_CASSANDRA_KEYSPACE": ours.cassandra_keyspace,
            "KLINESTREAM_MLFLOW_TRACKING_URI": ours.mlflow_tracking_uri,
            "KLINESTREAM_MLFLOW_MODEL_NAME": ours.mlflow_model_name,
            "KLINESTREAM_DEVICE": "cpu",
            "KLINESTREAM_BINANCE_BASE_URL": str(ours.binance_base_url),
            "KLINESTREAM_BINANCE_WS_URL": str(ours.binance_ws_url),
        }
    )
    logs = tmp_path_factory.mktemp("readme-logs")
    user_home = tmp_path_factory.mktemp("readme-user")
    (user_home / "klines").symlink_to(SHARED, target_is_directory=True)
    ensure_topics(ours)  # the admin path: the ingestor and the stream may not create topics or keyspaces
    provision_keyspace(ours)
    workspace = Workspace(home, ours, env, logs, user_home)
    try:
        yield workspace
    finally:
        _drop_everything(ours, delete_topics, workspace.run_ids)


def _drop_everything(settings: Settings, delete_topics: Any, run_ids: list[str]) -> None:
    from adapters.cassandra.provision import drop_keyspace
    from adapters.mlflow.registry import registry_client

    for run_id in run_ids:
        registry_client(settings.mlflow_tracking_uri).delete_run(run_id)
    try:
        delete_topics(settings, client_id="klinestream-tests")
    finally:
        try:
            drop_keyspace(settings)
        finally:
            client = registry_client(settings.mlflow_tracking_uri)
            if client.search_registered_models(f"name='{settings.mlflow_model_name}'"):
                client.delete_registered_model(settings.mlflow_model_name)


def expand_tilde(ws: Workspace, argv: list[str]) -> list[str]:
    """``argv`` with a leading ``~/`` expanded to the workspace's user home, as the shell expands it."""
    return [str(ws.user_home / arg[2:]) if arg.startswith("~/") else arg for arg in argv]


def run(ws: Workspace, argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a command to its end from the repository root; fail with its output when it fails."""
    argv = expand_tilde(ws, argv)
    done = subprocess.run(argv, cwd=REPO_ROOT, env=ws.env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


class LongRunning:
    """A long-running README command in its own session; its whole process group is killed on exit."""

    def __init__(self, ws: Workspace, argv: list[str]) -> None:
        self.argv, self.log = expand_tilde(ws, argv), ws.logs / f"{argv[1]}.log"
        self._out: IO[str] = self.log.open("w")
        self.process = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=ws.env, stdout=self._out,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        self.pgid = self.process.pid  # a new session: its leader's pid is the group id

    def output(self) -> str:
        return self.log.read_text()

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{' '.join(self.argv)} ended {self.process.returncode}:\n{self.output()[-3000:]}")
        return True

    def terminate(self, timeout: float) -> int:
        """SIGTERM, as a service manager stops it; the exit code (negative: killed by that signal)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.argv[1]} did not stop within {timeout} s of SIGTERM") from None

    def group_members(self) -> list[str]:
        """The names of the processes still in the group (e.g. ``java``)."""
        members = []
        for process in psutil.process_iter(["name"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(process.pid) == self.pgid:
                    members.append(str(process.info["name"]))
        return members

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill_group(self) -> None:
        """SIGKILL to every process of the group (a Spark JVM included), then reap."""
        with_signal = self.group_alive()
        if with_signal:
            os.killpg(self.pgid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=30)
        try:
            wait_for(lambda: not self.group_alive(), 30, message=f"process group {self.pgid} outlived SIGKILL by 30 s")
        finally:
            self._out.close()

    def __enter__(self) -> LongRunning:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_group()


# --- backfill, validate ---------------------------------------------------------------------------
def test_readme_backfill_then_validate_put_january_2023_of_two_symbols_into_the_validated_lake(
    ws: Workspace,
) -> None:
    from adapters import lake

    symbols = ["BTCUSDT", "ETHUSDT"]
    backfill = klinestream_command("backfill")
    assert backfill[backfill.index("--symbols") + 1] == ",".join(symbols)
    run(ws, backfill)
    root = ws.settings.lake_root
    assert root == ws.home / "lake"
    assert_validated_equals_files(root, SHARED, symbols, JAN_1, FEB_1, 744)

    # validate publishes raw → validated: with the validated zone gone, only `validate` can bring it back
    _remove_tree(root / "validated")
    assert lake.read_range(root, "validated", symbols, JAN_1, FEB_1).empty
    run(ws, klinestream_command("validate"))
    assert_validated_equals_files(root, SHARED, symbols, JAN_1, FEB_1, 744)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


# --- train --register, promote --auto -------------------------------------------------------------
def test_readme_train_registers_an_lstm_challenger_and_promote_auto_makes_it_champion(ws: Workspace) -> None:
    from adapters.mlflow.registry import CHALLENGER, CHAMPION, alias_version, registry_client

    # promote --auto gates on the validated lake's holdout (the five symbols, with their history pad)
    shared = str(SHARED)
    run(ws, ["klinestream", "backfill", "--symbols", ",".join(DEFAULT_SYMBOLS), "--range", "2022-12-01:2023-02-01",
             "--source", "files", "--data-dir", shared])  # fmt: skip

    started = time.monotonic()
    done = run(ws, klinestream_command("train"), timeout=900)
    seconds = time.monotonic() - started
    print(f"klinestream train (README line) took {seconds:.0f} s")
    out = ws.home / "models" / "lstm-seed0"
    stdout = done.stdout.replace("\n", "")
    assert f"policy saved to {out / 'policy'}" in stdout, done.stdout[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "lstm" and metrics["seed"] == 0 and metrics["hours"] == 744
    assert metrics["train"].startswith("2021-01-01") and metrics["test"].startswith("2023-01-01")
    assert metrics["env_steps"] > 0 and metrics["updates"] > 0

    # --register: a run of the training experiment, registered as a new version with the challenger alias
    uri, name = ws.settings.mlflow_tracking_uri, ws.settings.mlflow_model_name
    client = registry_client(uri)
    version = alias_version(uri, name, CHALLENGER)
    assert version is not None and f"registered {name} version {version} (alias challenger)" in stdout
    tags = client.get_model_version(name, str(version)).tags
    assert (tags["variant"], tags["seed"], tags["test_range"]) == ("lstm", "0", "2023-01-01:2023-02-01")
    ws.run_ids.append(tags["run_id"])
    run_tags = client.get_run(tags["run_id"]).data.tags
    assert run_tags["train_range"] == "2021-01-01:2022-01-01" and run_tags["trained_by"] == "klinestream train"

    promote = run(ws, klinestream_command("promote"))
    tags = client.get_model_version(name, str(version)).tags
    assert tags["gate.holdout"].startswith("2023-01-01") and tags["gate.baseline"] == "cash"
    if f"version {version} promoted:" not in promote.stdout:
        # the gate keeps out a model that does not beat cash after fees; the README's manual promotion
        assert f"version {version} rejected:" in promote.stdout and "does not beat cash" in promote.stdout
        assert tags["gate.decision"] == "rejected"
        run(ws, ["klinestream", "promote", "--model", str(version)])
    assert alias_version(uri, name, CHAMPION) == version
    ws.champion = version


# --- simulator, ingest ----------------------------------------------------------------------------
def test_readme_simulator_serves_rest_and_websocket_and_ingest_publishes_closed_klines_to_kafka(
    ws: Workspace,
) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8900)) == 0:
            pytest.fail("port 8900 (the README simulator's) is held by another program")
    simulator = klinestream_command("simulator")
    with LongRunning(ws, simulator) as sim:
        wait_for(lambda: sim.alive() and _answers(f"{SIMULATOR}/api/v3/ping"), 90)
        now = requests.get(f"{SIMULATOR}/api/v3/time", timeout=10).json()["serverTime"]
        assert JAN_1 <= now < FEB_1, "the replay clock is not in January 2023"
        history = JAN_1 - 5 * HOUR_MS  # the last hours of 2022: history, closed whatever the replay clock says
        query: dict[str, str | int] = {"symbol": "BTCUSDT", "interval": "1h", "startTime": history, "limit": 5}
        rows = requests.get(f"{SIMULATOR}/api/v3/klines", params=query, timeout=10).json()
        assert [r[0] for r in rows] == [history + h * HOUR_MS for h in range(5)]
        closes = _source_closes(history)
        assert [float(r[4]) for r in rows] == [closes[("BTCUSDT", history + h * HOUR_MS)] for h in range(5)]
        messages = asyncio.run(_websocket_messages(f"{ws.settings.binance_ws_url}/ws/btcusdt@kline_1h", 6))
        assert {m["k"]["s"] for m in messages} == {"BTCUSDT"} and any(m["k"]["x"] for m in messages)
        assert any(not m["k"]["x"] for m in messages), "no x=false update before a closed kline"

        with LongRunning(ws, klinestream_command("ingest")) as ingest:
            wanted = len(DEFAULT_SYMBOLS) * INGESTED_HOURS
            wait_for(lambda: ingest.alive() and len(read_topic(ws.settings, ws.settings.kafka_topic_klines)) >= wanted,
                     120)  # fmt: skip
            code = ingest.terminate(timeout=60)
            assert code == 0, f"ingest exited {code} on SIGTERM:\n{ingest.output()[-3000:]}"
            assert "ingestor stopped" in ingest.output()
        code = sim.terminate(timeout=30)
        assert code == 0 and "simulator stopped" in sim.output(), sim.output()[-2000:]

    records = read_topic(ws.settings, ws.settings.kafka_topic_klines)
    klines = [parse_record(r.value or b"") for r in records]
    assert all(r.key == k.symbol.encode() for r, k in zip(records, klines, strict=True))
    assert {k.symbol for k in klines} == set(DEFAULT_SYMBOLS)
    keys = [(k.symbol, k.open_time) for k in klines]
    assert len(set(keys)) == len(keys), "a kline was published twice"
    assert all(k.close_time == k.open_time + HOUR_MS - 1 and JAN_1 <= k.open_time < FEB_1 for k in klines)
    source = _source_closes()
    assert all(source[(k.symbol, k.open_time)] == k.close for k in klines), "a kline differs from the files"
    ws.ingested = klines


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=3).ok
    except requests.RequestException:
        return False


async def _websocket_messages(url: str, count: int) -> list[dict[str, Any]]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket_:
        return [await asyncio.wait_for(socket_.receive_json(), 30) for _ in range(count)]


def _source_closes(since: int = JAN_1) -> dict[tuple[str, int], float]:
    from adapters.kline_files import read_kline_folder

    frame: pd.DataFrame = read_kline_folder(SHARED, DEFAULT_SYMBOLS)
    frame = frame[frame["open_time"] >= since]
    return {(s, int(t)): float(c) for s, t, c in zip(frame["symbol"], frame["open_time"], frame["close"], strict=True)}


# --- stream ---------------------------------------------------------------------------------------
def test_readme_stream_trades_the_champion_on_the_ingested_klines_into_cassandra(ws: Workspace) -> None:
    from tests.integration.live_stream_helpers import read_rows

    if ws.champion is None or not ws.ingested:
        pytest.fail("needs the champion and the ingested klines of the two tests before it (run the whole module)")
    hours = {k.open_time for k in ws.ingested if k.symbol == "BTCUSDT"}

    def decisions() -> list[dict[str, Any]]:
        try:
            return read_rows(ws.settings, "decisions", TRADER)
        except Exception:  # the keyspace or table does not exist until the trader has started
            return []

    with LongRunning(ws, klinestream_command("stream")) as stream:
        try:
            wait_for(lambda: stream.alive() and len(decisions()) >= 5, 420)
            ws.stream_exit = stream.terminate(timeout=120)
            time.sleep(2)  # a JVM that was going to follow its driver has gone by now
            ws.stream_orphans = stream.group_members()
            print(f"klinestream stream: exit {ws.stream_exit} on SIGTERM; its group alive after: {ws.stream_orphans}")
        finally:
            stream.kill_group()
        assert not stream.group_alive(), "a process of the stream (the Spark JVM?) outlived the kill"
    rows = decisions()
    assert rows and all(r["model_version"] == str(ws.champion) for r in rows)
    assert {r["open_time"] for r in rows} <= hours, "a decision for an hour that was never ingested"
    assert (ws.home / "checkpoints" / "klines-trader").is_dir(), "the Spark checkpoint is not under KLINESTREAM_HOME"


def test_readme_stream_exits_zero_on_sigterm_and_leaves_no_process(ws: Workspace) -> None:
    if ws.stream_exit is None:
        pytest.fail("needs test_readme_stream_trades_the_champion_on_the_ingested_klines_into_cassandra")
    assert ws.stream_exit == 0 and ws.stream_orphans == []
