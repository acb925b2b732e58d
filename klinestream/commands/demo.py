"""``klinestream demo`` (the whole job in one command) and ``klinestream dashboard`` (the live page).

Heavy imports (pyspark, torch, MLflow, Airflow, aiohttp) happen inside the command bodies.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from klinestream.commands.options import existing_folder, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from models.settings import Settings

log = logging.getLogger(__name__)


def demo_airflow_env(settings: Settings) -> dict[str, str]:
    """The demo's own Airflow metadata database (``<home>/demo/airflow``) for ``dag.test()`` runs."""
    home = settings.home / "demo" / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[2] / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }


def prepare_airflow(settings: Settings, console: Console) -> None:
    """Point this process's Airflow at the demo's database and migrate it once (stamped)."""
    env = demo_airflow_env(settings)
    os.environ.update(env)
    home = Path(env["AIRFLOW_HOME"])
    stamp = home / ".migrated"
    if stamp.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    console.print(f"migrating the demo's Airflow database in {home} (first run only) ...", markup=False)
    done = subprocess.run(
        [str(airflow), "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise typer.BadParameter(f"airflow db migrate failed in {home}: {' '.join(tail)}")
    stamp.touch()


def demo(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Kline files used when Binance is unreachable (default KLINESTREAM_DATA_DIR)."
    ),
    quick: bool = typer.Option(
        True, "--quick/--full", help="Short training and a 5-month backfill (default), or the reference protocol."
    ),
    keep_running: bool = typer.Option(
        False, "--keep-running", help="After the summary, keep the dashboard serving (the stack stays up anyway)."
    ),
    speed: float = typer.Option(24.0, "--speed", min=0.1, help="Replay speed, simulated hours per real second."),
    port: int = typer.Option(8050, "--port", help="Dashboard port during the run (0 = no dashboard)."),
    timeout: float = typer.Option(600.0, "--timeout", min=10, help="Seconds to wait for every replayed decision."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as JSON on stdout (the progress goes to stderr)."
    ),
) -> None:
    """The whole job in one command, from the local stack to a live replay and its summary.

    Stack up → klines → backfill (pipeline + DAG) → validate → retrain (DAG) → promote → live replay of
    January 2023 with online learning → summary. The stack stays up; the demo's own processes stop. The
    libraries' output (Spark, Airflow, MLflow, warnings) goes to a log file that the summary names.
    """
    from rich.console import Console

    from klinestream.demo import DemoConfig, run_demo
    from klinestream.demo.output import route_library_output
    from klinestream.demo.runner import new_run_id
    from klinestream.demo.summary import DemoSummary, summary_dict
    from models.settings import load_settings

    settings = load_settings()
    folder = existing_folder(data_dir)
    for name in ("kafka", "py4j", "binance.ws", "aiohttp.access", "cassandra", "alembic", "great_expectations"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    config = DemoConfig(
        data_dir=folder.resolve() if folder else None,
        quick=quick,
        keep_running=keep_running,
        speed=speed,
        dashboard_port=port or None,
        live_timeout_s=timeout,
    )
    run_id = new_run_id()
    shown: list[DemoSummary] = []
    try:
        with route_library_output(settings.home / "demo" / run_id / "demo.log") as terminal:
            console = Console(file=terminal.err if as_json else terminal.out, soft_wrap=True)
            console.print(f"library output (Spark, Airflow, MLflow, warnings): {terminal.log_file}", markup=False)
            prepare_airflow(settings, console)
            summary = run_demo(settings, config, console, run_id=run_id, log_file=terminal.log_file,
                               show_summary=shown.append if as_json else None)  # fmt: skip
    finally:
        if shown:
            print_json(summary_dict(shown[0]))
    if not summary.complete:
        raise typer.Exit(1)


def dashboard(
    port: int = typer.Option(8050, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 in a container)."),
    trader: str = typer.Option(None, "--trader", help="Trader id shown first (default: the newest demo trader)."),
    symbol: str = typer.Option(None, "--symbol", help="Traded symbol shown first (default KLINESTREAM_TRADED_SYMBOL)."),
) -> None:
    """Serve the live dashboard from Cassandra: candlesticks with trades and model swaps, equity against
    buy-and-hold, drawdown, every order, all traders' overview, and the kill switch behind a login."""
    import asyncio

    from klinestream.dashboard.server import dashboard_server
    from models.settings import load_settings

    settings = load_settings()
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    chosen_symbol = symbol or (settings.traded_symbol if trader else None)
    server = dashboard_server(settings, host, port, trader, chosen_symbol)
    typer.echo(f"dashboard: http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        asyncio.run(server.serve_forever())
    except KeyboardInterrupt:
        typer.echo("dashboard stopped")
    finally:
        server.close()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("dashboard")(dashboard)
