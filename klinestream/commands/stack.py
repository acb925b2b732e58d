"""``klinestream stack install|up|down|status`` — the real services as local processes, without Docker.

Data and logs of each service live in ``<home>/stack/<service>/``; the jars of the Java services in
``<home>/jvm/`` (the home: ``--home``/``KLINESTREAM_HOME``, else the checkout's ``var/``, see
:func:`models.settings.locate`). ``status`` exits 1 when a service is not healthy. Heavy imports happen
inside the commands.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import typer

from klinestream.commands.options import JvmBundle, ServiceName, json_option, print_json

if TYPE_CHECKING:
    from klinestream.stack.control import ServiceState
    from klinestream.stack.services import Service

SERVICES_HELP = (
    "Services (kafka, cassandra, mlflow, airflow; `live` = the supervised live processes); all when none is named."
)


def _names(services: list[ServiceName] | None) -> list[str]:
    return [str(s) for s in services] if services else []


def _quiet_clients() -> None:
    """Health checks use the Kafka and Cassandra clients, whose INFO logs would drown the command's output."""
    for name in ("kafka", "cassandra"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # a probe of a node not provisioned yet is refused the admin login before it tries the default superuser
    # (the driver logs each refusal with a traceback); SASL PLAIN on loopback warns at every connection
    logging.getLogger("cassandra.cluster").setLevel(logging.CRITICAL)
    logging.getLogger("kafka.net.sasl").setLevel(logging.ERROR)


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MB"


def install(
    bundles: list[JvmBundle] = typer.Argument(None, help="JVM bundles; all by default.", show_default=False),
    force: bool = typer.Option(False, "--force", help="Resolve again even when the stamp says up to date."),
) -> None:
    """Resolve the Java services' jars and Spark's Kafka connector from Maven Central into <home>/jvm."""
    from rich.console import Console

    from klinestream.stack.jvm import BUNDLES
    from klinestream.stack.jvm import install as install_jars
    from models.settings import load_settings

    settings = load_settings()
    console = Console(soft_wrap=True)
    for result in install_jars(settings.jvm_dir, [str(b) for b in bundles] if bundles else BUNDLES, force=force):
        where = settings.jvm_dir / result.bundle
        if result.action == "up to date":
            console.print(f"{result.bundle}: up to date ({result.jars} jars in {where}), nothing to do")
        else:
            console.print(f"{result.bundle}: resolved {result.jars} jars into {where} in {result.seconds:.1f} s")
        for note in result.notes:
            console.print(f"  {note}")


def up(
    services: list[ServiceName] = typer.Argument(None, help=SERVICES_HELP, show_default=False),
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
    from klinestream.stack.secrets import ensure_secrets
    from klinestream.stack.services import build_services
    from models.settings import load_settings

    _quiet_clients()
    console = Console(soft_wrap=True)
    settings = ensure_secrets(load_settings())
    named = _names(services)
    names = [n for n in named if n != "live"]
    live = live or "live" in named
    chosen = build_services(settings, names) if names or not named else []  # `up live`: the live part only
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


def down(services: list[ServiceName] = typer.Argument(None, help=SERVICES_HELP, show_default=False)) -> None:
    """Stop the services this stack started (by pid file, whole process group) and leave no child behind."""
    from rich.console import Console

    from klinestream.stack.control import down as take_down
    from klinestream.stack.services import build_services
    from models.settings import load_settings

    console = Console(soft_wrap=True)
    settings = load_settings()
    named = _names(services)
    names = [n for n in named if n != "live"]
    chosen = build_services(settings, names) if names or not named else []
    if not named or "live" in named:  # the supervised live processes first (down stops in reverse order)
        from klinestream.stack.services import LiveService

        chosen.append(LiveService(settings))
    for result in take_down(chosen):
        if result.stopped_pid is None:
            console.print(f"{result.name}: not running")
            continue
        forced = f", SIGKILL needed for {list(result.killed)}" if result.killed else ""
        console.print(f"{result.name}: stopped pid {result.stopped_pid} in {result.seconds:.1f} s{forced}")


_HEALTH_STYLE = {"healthy": "green", "not answering": "yellow", "port taken, not ours": "red"}


def state_row(service: Service, state: ServiceState) -> dict[str, Any]:
    """One service as ``status`` reports it (the JSON object; the table shows the same fields)."""
    return {
        "service": state.name,
        "host": state.host,
        "port": state.port,
        "pid": state.pid,
        "rss_bytes": state.rss_bytes,
        "uptime_s": None if state.uptime_s is None else round(state.uptime_s, 1),
        "health": state.health.value,
        "log": str(service.log_path),
        "foreign": state.foreign,
        "notes": state.notes or None,
    }


def _print_table(stack_dir: Any, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"klinestream stack ({stack_dir})")
    for column in ("service", "port", "pid", "memory", "uptime", "health"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        uptime = "-" if row["uptime_s"] is None else f"{row['uptime_s'] / 60:.1f} min"
        style = _HEALTH_STYLE.get(row["health"])
        table.add_row(row["service"], f"{row['host']}:{row['port']}", str(row["pid"] or "-"), _mb(row["rss_bytes"]),
                      uptime, f"[{style}]{row['health']}[/{style}]" if style else row["health"])  # fmt: skip
    console = Console(soft_wrap=True)
    console.print(table)
    console.print("memory = resident set of the service and all its child processes")
    for row in rows:
        extra = [f"{row['foreign']}, which klinestream did not start"] if row["foreign"] else []
        extra += [row["notes"]] if row["notes"] else []
        console.print("; ".join([f"{row['service']}: log {row['log']}", *extra]), markup=False, highlight=False)


def status(
    services: list[ServiceName] = typer.Argument(None, help=SERVICES_HELP, show_default=False),
    as_json: bool = json_option(),
) -> None:
    """Show port, pid, resident memory (with children) and health of each service; exit 1 unless all are healthy."""
    from klinestream.stack.control import all_healthy, inspect
    from klinestream.stack.services import build_services
    from models.settings import load_settings

    _quiet_clients()
    settings = load_settings()
    named = _names(services)
    names = [n for n in named if n != "live"]
    chosen = build_services(settings, names) if names or not named else []
    states = [inspect(service) for service in chosen]
    rows = [state_row(service, state) for service, state in zip(chosen, states, strict=True)]
    live = live_rows(settings) if not named or "live" in named else None
    if live == [] and not named:
        live = None  # no supervisor runs and none was asked for (`stack up` without --live)
    # asked for, or running: each live process must answer /health
    live_ok = live is None or (bool(live) and all(row["health"] == "ok" for row in live))
    healthy = all_healthy(states) and live_ok
    if as_json:
        print_json({"stack_dir": str(settings.stack_dir), "healthy": healthy, "services": rows, "live": live})
    else:
        if rows:
            _print_table(settings.stack_dir, rows)
        if live is not None:
            _print_live_table(live)
    if not healthy:
        raise typer.Exit(1)


def live_rows(settings: Any) -> list[dict[str, Any]]:
    """The supervised live processes (``stack up --live``): pid, restarts, last exit, /health and /ready; none
    when no supervisor runs."""
    import psutil

    from klinestream.stack.supervisor import probe, read_state

    state: dict[str, Any] = read_state(settings) or {}
    supervisor_pid = state.get("supervisor_pid")
    if not isinstance(supervisor_pid, int) or not psutil.pid_exists(supervisor_pid):
        return []  # never ran here, or stopped (its last state file stays behind)
    rows = []
    programs: list[dict[str, Any]] = list(state.get("programs") or [])
    for program in programs:
        health, ready = probe(program.get("health_url")) if program.get("pid") else ("stopped", "-")
        rows.append({"process": str(program["name"]), "pid": program.get("pid"), "restarts": program.get("restarts", 0),
                     "last_exit": program.get("last_exit"), "health": health, "ready": ready,
                     "supervisor_pid": state.get("supervisor_pid")})  # fmt: skip
    return rows


def _print_live_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    if not rows:
        console.print("live processes: not running (klinestream stack up --live)")
        return
    table = Table(title=f"live processes (supervisor pid {rows[0]['supervisor_pid']})")
    for column in ("process", "pid", "restarts", "last exit", "health", "ready"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        last_exit = "-" if row["last_exit"] is None else str(row["last_exit"])
        table.add_row(row["process"], str(row["pid"] or "-"), str(row["restarts"]), last_exit, row["health"],
                      row["ready"])  # fmt: skip
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
    stack = typer.Typer(
        cls=app.info.cls, help="Install, start, stop and inspect the local service stack.", no_args_is_help=True
    )
    stack.command("install")(install)
    stack.command("up")(up)
    stack.command("down")(down)
    stack.command("status")(status)
    stack.command("supervise")(supervise)
    app.add_typer(stack, name="stack")
