"""``klinestream stack install|up|down|status`` — the real services as local processes, without Docker.

Data and logs of each service live in ``<home>/stack/<service>/``; the jars of the Java services in
``<home>/jvm/`` (``KLINESTREAM_HOME`` defaults to ``./var``). Heavy imports happen inside the commands.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from klinestream.stack.control import ServiceState

SERVICES_HELP = (
    "Services (kafka, cassandra, mlflow, airflow; `live` = the supervised live processes); all when none is named."
)


def _quiet_clients() -> None:
    """Health checks use the Kafka and Cassandra clients, whose INFO logs would drown the command's output."""
    for name in ("kafka", "cassandra"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MB"


def install(
    bundles: list[str] = typer.Argument(None, help="JVM bundles (kafka, cassandra, spark-kafka); all by default."),
    force: bool = typer.Option(False, "--force", help="Resolve again even when the stamp says up to date."),
) -> None:
    """Resolve the Java services' jars and Spark's Kafka connector from Maven Central into <home>/jvm."""
    from rich.console import Console

    from klinestream.stack.jvm import BUNDLES
    from klinestream.stack.jvm import install as install_jars
    from models.settings import load_settings

    settings = load_settings()
    console = Console(soft_wrap=True)
    for result in install_jars(settings.jvm_dir, bundles or BUNDLES, force=force):
        where = settings.jvm_dir / result.bundle
        if result.action == "up to date":
            console.print(f"{result.bundle}: up to date ({result.jars} jars in {where}), nothing to do")
        else:
            console.print(f"{result.bundle}: resolved {result.jars} jars into {where} in {result.seconds:.1f} s")
        for note in result.notes:
            console.print(f"  {note}")


def up(
    services: list[str] = typer.Argument(None, help=SERVICES_HELP),
    live: bool = typer.Option(
        False,
        "--live",
        help="Also run the live processes (ingestor, stream, dashboard; simulator offline; bot "
        "with a Telegram token) under a supervisor that restarts them on crash.",
    ),
) -> None:
    """Start the services that are not running and wait until each one answers."""
    from rich.console import Console

    from klinestream.stack.control import Action, StackStartError
    from klinestream.stack.control import up as bring_up
    from klinestream.stack.services import build_services
    from models.settings import load_settings

    _quiet_clients()
    console = Console(soft_wrap=True)
    settings = load_settings()
    names = [n for n in services or [] if n != "live"]
    live = live or "live" in (services or [])
    chosen = build_services(settings, names) if names or not services else []  # `up live`: the live part only
    if live:
        from klinestream.stack.services import LiveService

        chosen.append(LiveService(settings))
    try:
        results = bring_up(chosen, report=console.print)
    except StackStartError as exc:
        if exc.log_tail:
            err = Console(stderr=True, soft_wrap=True)
            err.print(f"--- last lines of the log ---\n{exc.log_tail}\n---", markup=False, highlight=False)
        raise
    for result in results:
        if result.action is Action.LEAVE:
            console.print(f"{result.name}: already running and healthy, left alone ({_mb(result.rss_bytes)})")
        else:
            console.print(f"{result.name}: up, start time {result.seconds:.1f} s ({_mb(result.rss_bytes)} resident)")


def down(services: list[str] = typer.Argument(None, help=SERVICES_HELP)) -> None:
    """Stop the services this stack started (by pid file, whole process group) and leave no child behind."""
    from rich.console import Console

    from klinestream.stack.control import down as take_down
    from klinestream.stack.services import build_services
    from models.settings import load_settings

    console = Console(soft_wrap=True)
    settings = load_settings()
    names = [n for n in services or [] if n != "live"]
    chosen = build_services(settings, names) if names or not services else []
    if not services or "live" in services:  # the supervised live processes first (down stops in reverse order)
        from klinestream.stack.services import LiveService

        chosen.append(LiveService(settings))
    for result in take_down(chosen):
        if result.stopped_pid is None:
            console.print(f"{result.name}: not running")
            continue
        forced = f", SIGKILL needed for {list(result.killed)}" if result.killed else ""
        console.print(f"{result.name}: stopped pid {result.stopped_pid} in {result.seconds:.1f} s{forced}")


def _health(state: ServiceState) -> str:
    if state.pid is None:
        return "[red]port taken, not ours[/red]" if state.foreign else "stopped"
    return "[green]healthy[/green]" if state.healthy else "[yellow]not answering[/yellow]"


def status() -> None:
    """Show port, pid, resident memory (with children) and health of each service."""
    from rich.console import Console
    from rich.table import Table

    from klinestream.stack.control import inspect
    from klinestream.stack.services import build_services
    from models.settings import load_settings

    _quiet_clients()
    settings = load_settings()
    table = Table(title=f"klinestream stack ({settings.stack_dir})")
    for column in ("service", "port", "pid", "memory", "uptime", "health"):
        table.add_column(column, no_wrap=True)
    notes = []
    for service in build_services(settings):
        state = inspect(service)
        extra = [f"{state.foreign}, which klinestream did not start"] if state.foreign else []
        extra += [state.notes] if state.notes else []
        notes.append("; ".join([f"{state.name}: log {service.log_path}", *extra]))
        uptime = "-" if state.uptime_s is None else f"{state.uptime_s / 60:.1f} min"
        table.add_row(
            state.name,
            f"{state.host}:{state.port}",
            str(state.pid or "-"),
            _mb(state.rss_bytes),
            uptime,
            _health(state),
        )
    console = Console(soft_wrap=True)
    console.print(table)
    console.print("memory = resident set of the service and all its child processes")
    for line in notes:
        console.print(line, markup=False, highlight=False)
    _live_status(settings, console)


def _live_status(settings: Any, console: Any) -> None:
    """The supervised live processes (``stack up --live``): pid, restarts, last exit, /health and /ready."""
    from rich.table import Table

    from klinestream.stack.supervisor import probe, read_state

    state = read_state(settings)
    if state is None:
        return
    table = Table(title=f"live processes (supervisor pid {state.get('supervisor_pid')})")
    for column in ("process", "pid", "restarts", "last exit", "health", "ready"):
        table.add_column(column, no_wrap=True)
    programs: list[dict[str, Any]] = list(state.get("programs") or [])  # type: ignore[call-overload]
    for program in programs:
        health, ready = probe(program.get("health_url")) if program.get("pid") else ("stopped", "-")
        last_exit = program.get("last_exit")
        table.add_row(str(program["name"]), str(program.get("pid") or "-"), str(program.get("restarts", 0)),
                      "-" if last_exit is None else str(last_exit), health, ready)  # fmt: skip
    console.print(table)


def supervise(
    only: list[str] = typer.Option(
        None, "--only", help="Run only these live programs (repeat the option; default KLINESTREAM_LIVE_PROGRAMS)."
    ),
    stream_args: str = typer.Option(
        None, "--stream-args", help="Extra arguments of `klinestream stream` (default KLINESTREAM_LIVE_STREAM_ARGS)."
    ),
) -> None:
    """Run the live processes in the foreground, restarting each on crash with backoff (what `up --live` runs)."""
    import signal

    from klinestream.stack.supervisor import Supervisor, live_dir, live_programs
    from models.settings import load_settings

    settings = load_settings()
    supervisor = Supervisor(live_programs(settings, only or (), stream_args), live_dir(settings))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stop())
    supervisor.run()


def register(app: typer.Typer) -> None:
    """Add the ``stack`` command group to the ``klinestream`` app."""
    stack = typer.Typer(help="Install, start, stop and inspect the local service stack.", no_args_is_help=True)
    stack.command("install")(install)
    stack.command("up")(up)
    stack.command("down")(down)
    stack.command("status")(status)
    stack.command("supervise")(supervise)
    app.add_typer(stack, name="stack")
