"""``klinestream demo``: the whole job in one command — stack up → klines → backfill (pipeline + DAG) →
validation → retrain (DAG) → gate/promotion → live replay with online learning → summary.

Re-running is safe: the stack is brought up idempotently (running services are left alone), the lake
writes are range replaces, the retrain registers new versions, and each run trades as a fresh trader
``demo-<run id>`` (UTC start time) on its own topics and Spark checkpoint; Cassandra rows are keyed by
trader, symbol and hour. Nothing of an earlier run is resumed or overwritten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from rich.console import Console

from klinestream.demo import data, training
from klinestream.demo.live import run_live
from klinestream.demo.summary import DemoSummary, render, trade_figures
from models.credentials import CassandraRole
from models.errors import KlinestreamError
from models.settings import Settings
from models.time_range import parse_range

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """What one demo run does."""

    data_dir: Path | None = None
    """Kline files to use when Binance is unreachable (default KLINESTREAM_DATA_DIR)."""
    quick: bool = True
    """Short training (1 episode × 240 h × 2 envs per variant) and a 5-month backfill."""
    backfill_range: str | None = None
    """Range to backfill; default 2022-09-01:2023-02-01 with ``quick``, else 2021-01-01:2023-02-01."""
    train_range: str | None = None
    """Default 2022-09-15:2023-01-01 with ``quick``, else the reference 2021-01-01:2022-01-01."""
    test_range: str = "2023-01-01:2023-02-01"
    """Holdout of the gate and the range the simulator replays (the reference test month)."""
    dag_hours: int = 1
    """Hours at the end of the range run through the klines_backfill DAG."""
    speed: float = 24.0
    """Replay speed, simulated hours per real second."""
    live_timeout_s: float = 600.0
    services: tuple[str, ...] = ("kafka", "cassandra", "mlflow", "airflow")
    dashboard_port: int | None = 8050
    """Serve the dashboard during the run on this port (None = not)."""
    keep_running: bool = False
    """After the summary, keep the dashboard serving until Ctrl-C."""
    training: dict[str, Any] | None = None
    """Overrides of the dqn_retrain run configuration (e.g. smaller ``episode_hours`` in tests)."""

    def ranges(self) -> tuple[str, str]:
        backfill = self.backfill_range or ("2022-09-01:2023-02-01" if self.quick else "2021-01-01:2023-02-01")
        train = self.train_range or ("2022-09-15:2023-01-01" if self.quick else "2021-01-01:2022-01-01")
        return backfill, train


class Steps:
    """Prints each step as it starts and records its time and what it did."""

    def __init__(self, console: Console, summary: DemoSummary) -> None:
        self.console, self.summary = console, summary

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        self.console.rule(f"[bold]{name}")
        began = time.monotonic()
        notes: list[str] = []
        yield notes
        seconds = time.monotonic() - began
        self.summary.steps.append((name, seconds, "; ".join(notes)))
        self.console.print(f"[green]✓[/] {name} ({seconds:.1f} s){': ' + '; '.join(notes) if notes else ''}")


def bring_stack_up(settings: Settings, services: tuple[str, ...], report: Callable[[str], None]) -> list[str]:
    from klinestream.stack import control, jvm
    from klinestream.stack.services import build_services

    bundles = [b for s, b in (("kafka", "kafka"), ("cassandra", "cassandra")) if s in services] + ["spark-kafka"]
    jvm.install(settings.jvm_dir, bundles)
    results = control.up(build_services(settings, list(services)), report=report)
    return [f"{r.name} {'started' if r.action is control.Action.START else 'already up'}" for r in results]


def _urls(settings: Settings, config: DemoConfig) -> dict[str, str]:
    urls = {"MLflow UI": settings.mlflow_tracking_uri}
    if "airflow" in config.services:
        urls["Airflow UI"] = settings.airflow_api_url
    if config.dashboard_port is not None:
        urls["dashboard"] = f"http://127.0.0.1:{config.dashboard_port}/"
    return urls


def _market_data(settings: Settings, config: DemoConfig, steps: Steps, work: Path, console: Console) -> None:
    from rich.progress import Progress

    backfill_range, _ = config.ranges()
    whole = parse_range(backfill_range)
    with steps.step("klines") as notes:
        choice = data.choose_source(settings, config.data_dir, work, whole.start_ms, whole.end_ms)
        steps.summary.data_label = choice.label
        notes.append(choice.label)
    with steps.step("backfill") as notes:
        total = (whole.end_ms - whole.start_ms) // 3_600_000 * len(settings.symbols)
        with Progress(console=console, transient=True) as bars:
            fetch, check = bars.add_task("fetch", total=total), bars.add_task("validate", total=total)
            result = data.bulk_backfill(
                settings,
                choice,
                whole.start_ms,
                whole.end_ms,
                lambda _s, n: bars.advance(fetch, n),
                lambda _s, n: bars.advance(check, n),
            )
        notes.append(f"backfill pipeline: {result.rows:,} klines {backfill_range} into {settings.lake_root}")
        with data.exported(data.source_env(settings, choice)):
            runs = data.run_backfill_dag(whole.end_ms, config.dag_hours)
        notes.append(
            f"klines_backfill DAG (dag.test) for the last {len(runs)} hour(s): " + ", ".join(r["state"] for r in runs)
        )
    with steps.step("validate") as notes:
        notes.append(
            f"Great Expectations kline suite: {result.validated_rows:,} klines validated, "
            f"{len(result.known_gap_hours)} known outage hours, {len(result.failures)} failures"
        )


def _retrain_and_promote(settings: Settings, config: DemoConfig, steps: Steps, choice_env: dict[str, str]) -> None:
    _, train_range = config.ranges()
    with steps.step("retrain") as notes:
        conf = training.retrain_conf(train_range, config.test_range, config.quick, config.training)
        with data.exported(choice_env):
            run_id = training.run_retrain(conf)
        notes.append(
            f"dqn_retrain (dag.test) run {run_id}: linear + lstm on {train_range}, "
            f"{'quick' if config.quick else 'full'} training"
        )
    with steps.step("promote") as notes:
        outcome = training.settle_champion(settings, run_id)
        for v in outcome.versions:
            notes.append(
                f"v{v.version} {v.variant}: gate {v.decision}, holdout Sharpe {v.sharpe:.2f}, "
                f"return {v.total_return:+.2%}, max drawdown {v.max_drawdown:.2%}, {v.n_trades} trades"
            )
        steps.summary.promotion_note = outcome.note


def new_run_id() -> str:
    """A demo run's id: its UTC start time (``20230101T120000``)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


def run_demo(
    settings: Settings,
    config: DemoConfig,
    console: Console | None = None,
    spark: Any = None,
    run_id: str | None = None,
    log_file: Path | None = None,
    show_summary: Callable[[DemoSummary], None] | None = None,
) -> DemoSummary:
    """Run every step; return the summary, also shown at the end even when a step fails (printed on
    ``console``, or handed to ``show_summary``). ``spark``: reuse a session (tests); ``log_file``: where the
    libraries' output goes (:mod:`klinestream.demo.output`), named in the summary."""
    console = console or Console(soft_wrap=True)
    began = time.monotonic()
    run_id = run_id or new_run_id()
    work = settings.home / "demo" / run_id
    work.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary(run_id, data_label="", urls=_urls(settings, config), log_file=str(log_file or ""))
    steps = Steps(console, summary)
    dashboard = None
    try:
        with steps.step("stack") as notes:
            notes += bring_stack_up(settings, config.services, lambda line: console.print(f"  {line}"))
        _market_data(settings, config, steps, work, console)
        _retrain_and_promote(settings, config, steps, data.source_env(settings))
        dashboard = _start_dashboard(settings, config, console)
        _live(settings, config, steps, summary, work, console, spark)
    finally:
        summary.wall_seconds = time.monotonic() - began
        if show_summary is None:
            console.print(render(summary))
        else:
            show_summary(summary)
        if dashboard is not None:
            _finish_dashboard(dashboard, config, console)
    return summary


def _live(
    settings: Settings, config: DemoConfig, steps: Steps, summary: DemoSummary, work: Path, console: Console, spark: Any
) -> None:
    from rich.progress import Progress

    from adapters.cassandra.reader import TradeReader
    from adapters.cassandra.session import CassandraSession

    replay = parse_range(config.test_range)
    with steps.step("live") as notes, Progress(console=console, transient=True) as bars:
        task = bars.add_task("hours decided", total=(replay.end_ms - replay.start_ms) // 3_600_000)
        result = run_live(
            settings,
            summary.run_id,
            (replay.start_ms, replay.end_ms),
            config.speed,
            work,
            config.live_timeout_s,
            lambda done, _total: bars.update(task, completed=done),
            spark,
        )
        notes.append(
            f"simulator → ingestor → Kafka → Spark → trader {result.trader_id}: {result.decided_hours}/"
            f"{result.expected_hours} hours decided in {result.batches} micro-batches at {config.speed:g} h/s"
        )
    summary.trader_id, summary.latencies_ms = result.trader_id, result.latencies_ms
    if "dashboard" in summary.urls:  # this replay's trader, its P&L counted from the replay's start (as below)
        query = urlencode({"trader": result.trader_id, "symbol": settings.traded_symbol, "since": replay.start_ms})
        summary.urls["dashboard"] = f"{summary.urls['dashboard']}?{query}"
    db = CassandraSession.connect(settings, CassandraRole.OPERATOR, max_outage_seconds=60)
    try:
        reader = TradeReader(db)
        decisions, orders, positions = (
            reader.read(table, result.trader_id, settings.traded_symbol)
            for table in ("decisions", "orders", "positions")
        )
    finally:
        db.close()
    summary.figures = trade_figures(decisions, orders, positions, replay.start_ms, replay.end_ms)
    summary.complete = result.decided_hours == result.expected_hours


def _start_dashboard(settings: Settings, config: DemoConfig, console: Console) -> Any:
    if config.dashboard_port is None:
        return None
    from klinestream.dashboard.server import dashboard_server

    since = parse_range(config.test_range).start_ms
    try:  # its P&L counts from the replay's start, as the summary does
        return dashboard_server(settings, port=config.dashboard_port, since=since).start_in_thread()
    except OSError as exc:
        console.print(f"dashboard not started on port {config.dashboard_port} ({exc}); is one running already?")
        return None
    except KlinestreamError as exc:  # no chart library and no npm, or access settings that refuse to start
        console.print(f"dashboard not started: {exc}")
        return None


def _finish_dashboard(dashboard: Any, config: DemoConfig, console: Console) -> None:
    if config.keep_running:
        console.print(f"dashboard {dashboard.url} keeps running (stack too): Ctrl-C to stop the dashboard")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("dashboard stopped")
    dashboard.close()
