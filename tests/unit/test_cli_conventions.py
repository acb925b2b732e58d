"""The CLI's conventions (klinestream/cli.py): --version, completion, choices, help without <bool>, one name per
concept (with the old spellings as hidden aliases), --json beside the text, `stack status`'s exit code, the
home and .env found from any folder, `config show` with secrets masked, and `train`'s MLflow edge cases.

Most commands run in this process through ``main()`` (as the console script does); the ones that depend on
the working folder, the environment or the shell run as the real console script in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import get_args

import psutil
import pytest

from klinestream.cli import main
from klinestream.commands import options
from klinestream.stack.process import PidRecord, write_pid_file
from klinestream.stack.services import Service
from models.settings import Settings, checkout_root, load_settings, locate
from tests.readme import REPO_ROOT

CLI = str(Path(sys.executable).with_name("klinestream"))
RANGE = "2021-01-01:2021-01-03"
TRAIN = ["train", "--variant", "lstm", "--train", RANGE]


def invoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``klinestream ARGS`` through ``main()`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["klinestream", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def run(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The console script in a subprocess, without the caller's KLINESTREAM_* settings (plus ``env``)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KLINESTREAM_")}
    clean["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), clean.get("PYTHONPATH", "")])
    return subprocess.run([CLI, *args], cwd=cwd or REPO_ROOT, env={**clean, **env}, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A throw-away KLINESTREAM_HOME for in-process commands (nothing of the developer's is read)."""
    for name in [n for n in os.environ if n.startswith("KLINESTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KLINESTREAM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# --- --version, completion --------------------------------------------------------------------------
def test_version_prints_the_projects_version_and_exits_0() -> None:
    done = run("--version")
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert done.returncode == 0 and done.stdout.strip() == f"klinestream {version}", done


def test_install_completion_writes_a_bash_completion_that_lists_the_commands(tmp_path: Path) -> None:
    # Typer finds the shell among the caller's processes (shellingham), not in $SHELL: install from a bash that
    # stays the parent (a detached run, e.g. under nohup, has no shell above it and is refused)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KLINESTREAM_")}
    clean.update(PYTHONPATH=str(REPO_ROOT), HOME=str(tmp_path), SHELL="/bin/bash")
    done = subprocess.run(["bash", "-c", f"'{CLI}' --install-completion; exit $?"], cwd=REPO_ROOT, env=clean,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    script = tmp_path / ".bash_completions" / "klinestream.sh"
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    env = {**os.environ, "PATH": f"{Path(CLI).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO_ROOT)}

    def complete(*words: str) -> list[str]:
        line = " ".join(f'"{w}"' for w in words)
        shell = (f"source {script}; COMP_WORDS=(klinestream {line}); COMP_CWORD={len(words)}; "
                 'klinestream_words=("${COMP_WORDS[@]}"); _klinestream_completion klinestream; '
                 'printf "%s\\n" "${COMPREPLY[@]}"')  # fmt: skip
        done = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert "train" in complete("tr") and "promote" in complete("pro")
    assert complete("train", "--variant", "") == ["linear", "lstm"]
    assert complete("stack", "up", "") == ["kafka", "cassandra", "mlflow", "airflow", "live"]


# --- choices ---------------------------------------------------------------------------------------
CHOICES: list[tuple[list[str], list[str]]] = [
    (["train", "--variant", "gru", "--train", RANGE], ["linear", "lstm"]),
    ([*TRAIN, "--reward", "greed"], ["reference", "log_return", "risk"]),
    ([*TRAIN, "--device", "tpu"], ["auto", "cpu", "cuda"]),
    ([*TRAIN, "--features", "magic"], ["reference", "indicators", "extended"]),
    (["backfill", "--range", RANGE, "--source", "ftp"], ["binance", "simulator", "files"]),
    (["kill-switch", "maybe"], ["on", "off", "status"]),
    (["stack", "up", "zookeeper"], ["kafka", "cassandra", "mlflow", "airflow"]),
    (["stack", "down", "kafka", "zookeeper"], ["kafka", "cassandra", "mlflow", "airflow"]),
    (["stack", "status", "zookeeper"], ["kafka", "cassandra", "mlflow", "airflow"]),
    (["stack", "install", "zookeeper"], ["kafka", "cassandra", "spark-kafka"]),
    (["tune", "--aggregate", "median"], ["mean", "lower_quartile"]),
    (["tune", "--variant", "gru"], ["linear", "lstm"]),
]


@pytest.mark.parametrize(("args", "allowed"), CHOICES, ids=lambda a: " ".join(a) if isinstance(a[0], str) else "")
def test_an_invalid_choice_exits_2_with_the_allowed_values_on_one_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str],
    allowed: list[str],
) -> None:  # fmt: skip
    code, _, err = invoke(monkeypatch, capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: Invalid value for "), err
    assert "Value error" not in lines[0]
    assert all(f"'{value}'" in lines[0] for value in allowed), lines[0]


@pytest.mark.parametrize(("args", "allowed"), CHOICES[:5], ids=lambda a: a[-2] if isinstance(a[0], str) else "")
def test_help_lists_the_choices(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                args: list[str], allowed: list[str]) -> None:  # fmt: skip
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = invoke(monkeypatch, capsys, args[0], "--help")
    assert code == 0 and f"<{'|'.join(allowed)}>" in out, out


def _commands() -> list[list[str]]:
    import typer.main

    from klinestream.cli import app

    root = typer.main.get_command(app)
    found: list[list[str]] = [[]]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        found.append([name])
        found += [[name, sub] for sub in getattr(command, "commands", {})]
    return found


def test_no_help_shows_a_type_beside_a_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = _commands()
    assert ["stack", "status"] in commands and ["config", "show"] in commands and ["train"] in commands
    for command in commands:
        code, out, _ = invoke(monkeypatch, capsys, *command, "--help")
        assert code == 0 and "--help" in out, command
        assert "<bool>" not in out, f"klinestream {' '.join(command)} --help shows <bool>:\n{out}"


def test_the_choice_lists_equal_their_sources() -> None:
    from klinestream.commands.dqn import DEFAULT_FEATURE_SET
    from klinestream.stack.jvm import BUNDLES
    from klinestream.stack.services import SERVICE_NAMES
    from models.config import VARIANTS
    from models.feature_sets import DEFAULT_FEATURE_SET as FEATURES_DEFAULT
    from models.feature_sets import FEATURE_SETS
    from models.networks import NETWORKS
    from pipelines.backfill import SOURCES
    from pipelines.tune.config import Aggregate
    from pipelines.walkforward.folds import WindowKind

    assert get_args(options.SourceKind) == SOURCES
    assert get_args(options.FeatureSetName) == tuple(FEATURE_SETS) and DEFAULT_FEATURE_SET == FEATURES_DEFAULT
    assert tuple(options.ServiceName) == (*SERVICE_NAMES, "live") and tuple(options.JvmBundle) == BUNDLES
    assert get_args(options.WindowKind) == get_args(WindowKind)
    assert get_args(options.TuneAggregate) == get_args(Aggregate)
    assert tuple(NETWORKS) == VARIANTS


# --- one name per concept, old spellings hidden but working ----------------------------------------
@pytest.mark.parametrize(
    ("command", "old", "new"),
    [("backfill", "--start", "--range"), ("backfill", "--path", "--data-dir"), ("validate", "--end", "--range"),
     ("promote", "--version", "--model"), ("promote", "--test-range", "--test"), ("stream", "--model-dir", "--model")],
)  # fmt: skip
def test_the_new_option_is_in_help_and_the_old_one_is_hidden(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str, old: str, new: str
) -> None:
    code, out, _ = invoke(monkeypatch, capsys, command, "--help")
    assert code == 0 and re.search(rf"{new}\b", out) and not re.search(rf"{old}\b", out), out


def test_the_deprecated_start_end_and_path_still_work_and_say_what_replaced_them(tmp_path: Path) -> None:
    done = run("backfill", "--start", "2021-01-01", "--end", "2021-01-02", "--source", "files", "--path",
               str(tmp_path / "missing"), KLINESTREAM_HOME=str(tmp_path))  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert lines[:2] == ["warning: --start/--end is deprecated, use --range START:END",
                         "warning: --path is deprecated, use --data-dir"], done.stderr  # fmt: skip
    # both reached the command: the range was parsed and the folder is the one --path named
    assert done.returncode == 1 and f"kline folder {tmp_path / 'missing'} does not exist" in lines[-1]


def test_range_or_bounds_reads_the_old_pair_as_the_new_range(capsys: pytest.CaptureFixture[str]) -> None:
    from models.time_range import parse_range

    old = options.range_or_bounds(None, "2023-01-01", "2023-02-01T06:00")
    new = parse_range("2023-01-01:2023-02-01T06:00")
    assert (old.start_ms, old.end_ms) == (new.start_ms, new.end_ms)
    assert "deprecated" in capsys.readouterr().err
    assert options.renamed(None, 7, "--version", "--model") == 7 and options.renamed(3, None, "--a", "--b") == 3


# --- stack status: exit code and --json -------------------------------------------------------------
class FakeService(Service):
    """A service that answers (or not) as the test says; "running" = its pid file names this process."""

    def __init__(self, settings: Settings, name: str, port: int, answers: bool) -> None:
        super().__init__(settings)
        self.name, self._port, self._answers = name, port, answers

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._port

    def command(self) -> list[str]:
        raise AssertionError("status starts nothing")

    def healthy(self) -> bool:
        return self._answers

    def run_as_this_process(self) -> FakeService:
        me = psutil.Process()
        write_pid_file(self.pid_path, PidRecord(me.pid, me.create_time(), ("fake",)))
        return self


def _status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], services: list[Service],
            *args: str) -> tuple[int, str]:  # fmt: skip
    import klinestream.stack.services as services_module

    monkeypatch.setattr(services_module, "build_services", lambda settings, names=(): services)
    code, out, _ = invoke(monkeypatch, capsys, "stack", "status", *args)
    return code, out


def test_stack_status_exits_1_with_a_service_down_and_says_so_in_json(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings()
    up = FakeService(settings, "kafka", 1, answers=True).run_as_this_process()
    mute = FakeService(settings, "mlflow", 2, answers=False).run_as_this_process()
    down = FakeService(settings, "cassandra", 3, answers=True)  # no pid file: stopped

    assert _status(monkeypatch, capsys, [up])[0] == 0
    code, text = _status(monkeypatch, capsys, [up, mute, down])
    assert code == 1
    code_json, out = _status(monkeypatch, capsys, [up, mute, down], "--json")
    report = json.loads(out)
    assert code_json == 1 and report["healthy"] is False and report["stack_dir"] == str(home / "stack")
    rows = {row["service"]: row for row in report["services"]}
    assert {name: row["health"] for name, row in rows.items()} == {
        "kafka": "healthy", "mlflow": "not answering", "cassandra": "stopped"}  # fmt: skip
    assert rows["kafka"]["pid"] == os.getpid() and rows["cassandra"]["pid"] is None
    # the text carries the same figures: each service's address, pid, health and log
    for row in rows.values():
        line = next(line for line in text.splitlines() if f" {row['service']} " in line)
        assert f"{row['host']}:{row['port']}" in line and str(row["pid"] or "-") in line and row["health"] in line
        assert f"{row['service']}: log {row['log']}" in text


def test_stack_status_of_a_stack_that_is_not_running_exits_1_from_the_real_console_script(tmp_path: Path) -> None:
    free = [_free_port() for _ in range(4)]
    done = run("stack", "status", "--json", KLINESTREAM_HOME=str(tmp_path),
               KLINESTREAM_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free[0]}", KLINESTREAM_CASSANDRA_PORT=str(free[1]),
               KLINESTREAM_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free[2]}",
               KLINESTREAM_AIRFLOW_API_URL=f"http://127.0.0.1:{free[3]}")  # fmt: skip
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(r["service"], r["health"]) for r in report["services"]] == [
        ("kafka", "stopped"), ("cassandra", "stopped"), ("mlflow", "stopped"), ("airflow", "stopped")]  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- home and .env, from any folder ----------------------------------------------------------------
def test_commands_run_from_another_folder_find_the_same_home_and_env_file(tmp_path: Path) -> None:
    here, there = run("config", "show", "--json"), run("config", "show", "--json", cwd=tmp_path)
    assert here.returncode == there.returncode == 0, there.stderr
    a, b = json.loads(here.stdout), json.loads(there.stdout)
    assert a["home"] == b["home"] == str(REPO_ROOT / "var") and a["home_from"] == "checkout"
    assert a["env_file"] == b["env_file"] == str(REPO_ROOT / ".env")
    status_here = run("stack", "status", "--json", KLINESTREAM_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    status_there = run("stack", "status", "--json", cwd=tmp_path, KLINESTREAM_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert json.loads(status_here.stdout)["stack_dir"] == json.loads(status_there.stdout)["stack_dir"]
    assert json.loads(status_there.stdout)["stack_dir"] == str(REPO_ROOT / "var" / "stack")


def test_home_option_and_variable_win_over_the_checkout(tmp_path: Path) -> None:
    by_option = json.loads(run("--home", str(tmp_path / "a"), "config", "show", "--json", cwd=tmp_path).stdout)
    by_variable = json.loads(run("config", "show", "--json", KLINESTREAM_HOME=str(tmp_path / "b")).stdout)
    assert by_option["home"] == str(tmp_path / "a") and by_option["folders"]["lake"] == str(tmp_path / "a" / "lake")
    assert by_variable["home"] == str(tmp_path / "b") and by_variable["home_from"].startswith("KLINESTREAM_HOME")


def test_relative_folders_in_env_are_taken_from_the_env_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("KLINESTREAM_")]:
        monkeypatch.delenv(name)
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("KLINESTREAM_HOME=./state\nKLINESTREAM_DATA_DIR=klines\nKLINESTREAM_FEE_RATE=0.002\n")
    monkeypatch.chdir(tmp_path)  # anywhere but the project
    settings = Settings(_env_file=project / ".env")  # type: ignore[call-arg]
    assert settings.home == project / "state" and settings.data_dir == project / "klines"
    assert settings.fee_rate == 0.002
    monkeypatch.setenv("KLINESTREAM_HOME", "relative")  # the environment's relative paths stay the caller's
    assert Settings(_env_file=project / ".env").home == tmp_path / "relative"  # type: ignore[call-arg]


def test_without_a_checkout_home_and_env_are_in_the_user_data_folder(tmp_path: Path) -> None:
    installed = locate({"XDG_DATA_HOME": str(tmp_path / "data")}, installed=True)
    assert installed.default_home == tmp_path / "data" / "klinestream" and installed.origin == "user data folder"
    assert installed.env_file == tmp_path / "data" / "klinestream" / ".env"
    assert locate({}, installed=True).default_home == Path.home() / ".local" / "share" / "klinestream"
    assert checkout_root() == REPO_ROOT
    fake = tmp_path / "site-packages" / "models" / "settings.py"
    fake.parent.mkdir(parents=True)
    (fake.parents[1] / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert checkout_root(fake) is None
    assert locate({}, root=tmp_path).default_home == tmp_path / "var"


# --- config show ----------------------------------------------------------------------------------
def test_config_show_masks_secrets_in_text_and_json() -> None:
    key, secret = "k3y" + "A" * 40, "s3cr3t" + "B" * 40
    env = {"KLINESTREAM_BINANCE_API_KEY": key, "KLINESTREAM_BINANCE_API_SECRET": secret,
           "KLINESTREAM_FEE_RATE": "0.00075", "KLINESTREAM_SYMBOLS": "BTCUSDT,ETHUSDT"}  # fmt: skip
    text, as_json = run("config", "show", **env), run("config", "show", "--json", **env)
    assert text.returncode == as_json.returncode == 0, text.stderr
    for done in (text, as_json):
        assert key not in done.stdout + done.stderr and secret not in done.stdout + done.stderr
    shown = json.loads(as_json.stdout)["settings"]
    assert shown["KLINESTREAM_BINANCE_API_KEY"] == shown["KLINESTREAM_BINANCE_API_SECRET"] == "**********"
    assert shown["KLINESTREAM_FEE_RATE"] == 0.00075 and shown["KLINESTREAM_SYMBOLS"] == ["BTCUSDT", "ETHUSDT"]
    rows = dict(line.split(None, 1) for line in text.stdout.splitlines() if line.startswith("KLINESTREAM_"))
    assert rows["KLINESTREAM_BINANCE_API_SECRET"].strip() == "**********"
    assert (
        rows["KLINESTREAM_FEE_RATE"].strip() == "0.00075" and rows["KLINESTREAM_SYMBOLS"].strip() == "BTCUSDT,ETHUSDT"
    )
    assert set(rows) == set(shown)


# --- train and MLflow -----------------------------------------------------------------------------
def _kline_files(folder: Path, settings: Settings) -> Path:
    from klinestream.demo.data import write_synthetic
    from models.time_range import parse_range

    window = parse_range("2021-01-01:2021-01-15")
    return write_synthetic(folder, settings, window.start_ms, window.end_ms)


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--register"], "--register needs --test"), (["--test", RANGE, "--register", "--no-track"], "drop --no-track")],
)
def test_register_needs_a_test_range_and_tracking(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, _, err = invoke(monkeypatch, capsys, *TRAIN, *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_train_says_mlflow_is_unreachable_and_goes_on_but_register_stops_before_training(tmp_path: Path) -> None:
    down = {"KLINESTREAM_HOME": str(tmp_path / "home"), "KLINESTREAM_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}",
            "KLINESTREAM_DEVICE": "cpu"}  # fmt: skip
    folder = _kline_files(tmp_path / "klines", load_settings(home=tmp_path / "home"))
    args = ["train", "--variant", "linear", "--train", "2021-01-03:2021-01-10", "--steps", "64", "--data-dir",
            str(folder), "--out", str(tmp_path / "out")]  # fmt: skip
    refused = run(*args, "--test", "2021-01-10:2021-01-15", "--register", **down)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        f"error: cannot register: the MLflow tracking server {down['KLINESTREAM_MLFLOW_TRACKING_URI']} does not answer "
        "(ConnectionError); start it (klinestream stack up mlflow)"]  # fmt: skip
    assert not (tmp_path / "out").exists(), "it trained before finding out it could not register"

    done = run(*args, **down)
    assert done.returncode == 0, done.stderr
    assert "MLflow is not reachable" in done.stderr and "this run is not tracked" in done.stderr
    assert (tmp_path / "out" / "policy").is_dir() and "MLflow run" not in done.stdout


# --- demo summary: --json carries the text's figures -----------------------------------------------
def test_the_demo_summary_json_carries_the_figures_of_the_text() -> None:
    from rich.console import Console

    from klinestream.demo.summary import DemoSummary, render, summary_dict, trade_figures
    from tests.unit.test_dashboard_matches_demo import DECISIONS, ORDERS, POSITIONS, T0

    summary = DemoSummary("20260101T000000", "real klines from files in /data", complete=True, wall_seconds=321.04,
                          steps=[("stack", 1.26, "kafka already up"), ("live", 60.0, "3/3 hours decided")],
                          promotion_note="v4 (lstm) passed the gate", trader_id="demo-20260101T000000",
                          figures=trade_figures(DECISIONS, ORDERS, POSITIONS, T0, T0 + 3 * 3_600_000),
                          latencies_ms=[120.0, 340.0, 2100.0], urls={"MLflow UI": "http://127.0.0.1:5000"},
                          log_file="/home/var/demo/20260101T000000/demo.log")  # fmt: skip
    data = json.loads(json.dumps(summary_dict(summary)))
    console = Console(width=200, record=True)
    console.print(render(summary))
    text = console.export_text()

    figures = data["figures"]
    assert (figures["decisions"], figures["hours"], figures["orders"], figures["filled"]) == (3, 3, 2, 2)
    assert figures["pnl"] == 900.0 and figures["buy_hold_pnl"] == 950.0 and figures["vs_buy_and_hold"] == -50.0
    expected_in_text = [
        f"{figures['decisions']} of {figures['hours']} hours", f"hold {figures['actions']['hold']}",
        f"buy {figures['actions']['buy']}", f"sell {figures['actions']['sell']}",
        f"{figures['orders']} ({figures['filled']} filled, {figures['rejected']} rejected by risk checks)",
        f"fees ${figures['fees']:,.2f}", f"${figures['pnl']:,.2f} ({figures['return']:+.2%})",
        f"from ${figures['start_equity']:,.2f}", f"${figures['buy_hold_pnl']:,.2f} ({figures['buy_hold_return']:+.2%})",
        f"-${-figures['vs_buy_and_hold']:,.2f}", f"models {', '.join(figures['model_versions'])}",
        f"p50 {data['latency_ms']['p50']:,} ms", f"p99 {data['latency_ms']['p99']:,} ms",
        f"max {data['latency_ms']['max']:,} ms ({data['latency_ms']['hours']} hours)", data["log_file"],
        data["promotion"], data["data"], data["urls"]["MLflow UI"], f"{data['wall_seconds']:,.1f}",
        *[f"{step['seconds']:,.1f}" for step in data["steps"]],
    ]  # fmt: skip
    missing = [item for item in expected_in_text if item not in text]
    assert missing == [], f"the text lacks {missing}:\n{text}"
