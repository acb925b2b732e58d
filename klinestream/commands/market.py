"""``klinestream backfill``, ``klinestream validate`` and ``klinestream simulator`` — market data.

Heavy imports (pandas, pyarrow, Great Expectations, aiohttp) happen inside the command bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from klinestream.commands.options import (
    DATA_DIR_HELP,
    RANGE_HELP,
    RANGE_METAVAR,
    SourceKind,
    range_or_bounds,
    renamed,
)
from models.time_range import RangeError, parse_time

if TYPE_CHECKING:
    from pipelines.backfill import BackfillSummary, Progress

SYMBOLS_HELP = "Comma-separated symbols, e.g. BTCUSDT,ETHUSDT (default: KLINESTREAM_SYMBOLS)."


def parse_time_ms(value: str, name: str) -> int:
    """``2021-01-01`` / ``2021-01-01T05:00`` (UTC unless an offset is given) → epoch ms."""
    try:
        return parse_time(value, name)
    except RangeError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


def parse_symbols(value: str | None, default: tuple[str, ...]) -> list[str]:
    if not value:
        return list(default)
    symbols = [s.strip().upper() for s in value.split(",") if s.strip()]
    bad = [s for s in symbols if not s.isalnum()]
    if not symbols or bad:
        raise typer.BadParameter(f"symbols must be alphanumeric, e.g. BTCUSDT,ETHUSDT (got {value!r})")
    return symbols


def _quiet_libraries() -> None:
    """Keep library chatter out of the progress bars. GX pins some of its module loggers to INFO, so
    its records stop at the ``great_expectations`` logger, which passes on warnings only."""
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.propagate:
        gx_logger.propagate = False
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        gx_logger.addHandler(handler)


@contextmanager
def _progress(total_fetch: int, total_validate: int) -> Iterator[tuple[Progress, Progress]]:
    """Two rich progress bars (fetch and validate) and their callbacks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    ) as bars:
        fetch = bars.add_task("fetch", total=total_fetch, visible=total_fetch > 0)
        check = bars.add_task("validate", total=total_validate)

        def on_fetch(symbol: str, rows: int) -> None:
            bars.update(fetch, advance=rows, description=f"fetch {symbol}")

        def on_validate(symbol: str, rows: int) -> None:
            bars.update(check, advance=rows, description=f"validate {symbol}")

        yield on_fetch, on_validate
        bars.update(fetch, completed=total_fetch)  # known outage hours have no kline to count
        bars.update(check, completed=total_validate)


def _print_summary(summary: BackfillSummary) -> None:
    from rich.console import Console
    from rich.table import Table

    from pipelines.validation import format_hour

    table = Table(title="klines", show_lines=False)
    for column in ("symbol", "fetched", "validated", "known gaps", "failed rules"):
        table.add_column(column, justify="left" if column in ("symbol", "failed rules") else "right")
    for result in summary.results:
        rules = ", ".join(f.rule for f in result.failures) or "-"
        fetched = summary.fetched.get(result.symbol)
        table.add_row(
            result.symbol,
            "-" if fetched is None else str(fetched),
            str(result.rows if result.success else 0),
            str(len(result.known_gaps)),
            rules,
        )
    console = Console(soft_wrap=True)
    console.print(table)
    gaps = summary.known_gap_hours
    shown = ", ".join(format_hour(h) for h in gaps[:14]) + (" ..." if len(gaps) > 14 else "")
    console.print(f"{summary.rows} klines, {len(gaps)} known outage hours{': ' + shown if gaps else ''}")
    for result in summary.failures:
        console.print(result.report(), style="red")


def backfill(
    time_range: str | None = typer.Option(
        None, "--range", metavar=RANGE_METAVAR, help=f"Hours to fetch and validate (required). {RANGE_HELP}"
    ),
    symbols: str = typer.Option(None, "--symbols", help=SYMBOLS_HELP),
    source: SourceKind | None = typer.Option(
        None, "--source", help="Where klines come from (default: from KLINESTREAM_BINANCE_BASE_URL / _DATA_DIR)."
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=f"For --source files. {DATA_DIR_HELP}"),
    docs: bool = typer.Option(False, "--docs/--no-docs", help="Render Great Expectations data docs under <home>."),
    start: str | None = typer.Option(None, "--start", hidden=True, help="Deprecated: --range START:END."),
    end: str | None = typer.Option(None, "--end", hidden=True, help="Deprecated: --range START:END."),
    path: Path | None = typer.Option(None, "--path", hidden=True, help="Deprecated: --data-dir."),
) -> None:
    """Fetch klines into the lake's raw zone, validate them and publish passing days to validated."""
    from adapters.lake import hour_range
    from models.settings import load_settings
    from pipelines.backfill import backfill as run_backfill
    from pipelines.backfill import resolve_source
    from pipelines.validation import KlineValidator

    window = range_or_bounds(time_range, start, end)
    folder = renamed(data_dir, path, "--path", "--data-dir")
    settings = load_settings()
    wanted = parse_symbols(symbols, settings.symbols)
    start_ms, end_ms = window.start_ms, window.end_ms
    kline_source = resolve_source(settings, source, folder)
    _quiet_libraries()
    validator = KlineValidator(docs_dir=_docs_dir(settings) if docs else None)
    hours = len(hour_range(start_ms, end_ms)) * len(wanted)
    with _progress(hours, hours) as (on_fetch, on_validate):
        summary = run_backfill(
            settings.lake_root, kline_source, wanted, start_ms, end_ms, validator, on_fetch, on_validate
        )
    _print_summary(summary)
    summary.raise_for_failures()


def validate(
    time_range: str | None = typer.Option(
        None, "--range", metavar=RANGE_METAVAR, help=f"Hours to validate (required). {RANGE_HELP}"
    ),
    symbols: str = typer.Option(None, "--symbols", help=SYMBOLS_HELP),
    docs: bool = typer.Option(True, "--docs/--no-docs", help="Render Great Expectations data docs under <home>."),
    start: str | None = typer.Option(None, "--start", hidden=True, help="Deprecated: --range START:END."),
    end: str | None = typer.Option(None, "--end", hidden=True, help="Deprecated: --range START:END."),
) -> None:
    """Validate the raw zone's klines of a range and publish the passing days to validated."""
    from adapters.lake import hour_range
    from models.settings import load_settings
    from pipelines.backfill import BackfillSummary, publish
    from pipelines.validation import KlineValidator

    window = range_or_bounds(time_range, start, end)
    settings = load_settings()
    wanted = parse_symbols(symbols, settings.symbols)
    start_ms, end_ms = window.start_ms, window.end_ms
    _quiet_libraries()
    validator = KlineValidator(docs_dir=_docs_dir(settings) if docs else None)
    with _progress(0, len(hour_range(start_ms, end_ms)) * len(wanted)) as (_, on_validate):
        results = publish(settings.lake_root, wanted, start_ms, end_ms, validator, on_validate)
    summary = BackfillSummary(start_ms, end_ms, f"lake {settings.lake_root}", results=results)
    _print_summary(summary)
    if docs:
        typer.echo(f"data docs: {_docs_dir(settings) / 'index.html'}")
    summary.raise_for_failures()


def _docs_dir(settings: Any) -> Path:
    from pipelines.validation import data_docs_dir

    return data_docs_dir(settings.home)


def simulator(
    data_dir: Path | None = typer.Option(None, "--data-dir", help=f"Serve these kline files. {DATA_DIR_HELP}"),
    from_lake: bool = typer.Option(False, "--lake", help="Serve the validated zone of the lake instead of files."),
    symbols: str = typer.Option(None, "--symbols", help=SYMBOLS_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8900, "--port", help="Port (0 = any free port)."),
    speed: float = typer.Option(1.0, "--speed", help="Replay speed in simulated hours per real second."),
    start: str = typer.Option(
        None, "--start", help="Replay start (UTC). Without it the clock is the wall clock: all klines are history."
    ),
    updates: int = typer.Option(2, "--updates", help="Non-closed (x=false) updates sent before each closed kline."),
) -> None:
    """Run the Binance exchange simulator (REST + kline streams + paper fills) until Ctrl-C."""
    import asyncio
    import signal

    from adapters.ops_http import new_registry
    from klinestream.observability import simulator_ops
    from models.settings import load_settings
    from simulator import KlineStore, ReplayClock, SimulatorServer
    from simulator.trading import PaperExchange

    settings = load_settings()
    if from_lake and data_dir is not None:
        raise typer.BadParameter("pass --data-dir DIR or --lake, not both", param_hint="--lake")
    folder = None if from_lake else (data_dir or settings.data_dir)
    if not from_lake and folder is None:
        raise typer.BadParameter("pass --data-dir DIR (or set KLINESTREAM_DATA_DIR) or --lake", param_hint="--data-dir")
    if speed <= 0:
        raise typer.BadParameter(f"must be > 0, got {speed}", param_hint="--speed")
    if from_lake:
        wanted = parse_symbols(symbols, settings.symbols)
        store = KlineStore.from_lake(settings.lake_root, wanted, 0, int(datetime.now(UTC).timestamp() * 1000))
    else:
        assert folder is not None
        if not folder.is_dir():
            raise typer.BadParameter(f"{folder} is not a folder", param_hint="--data-dir")
        store = KlineStore.from_files(folder, parse_symbols(symbols, ()) or None)
    if not store.symbols:
        raise typer.BadParameter("no klines to serve: the lake or folder holds none for these symbols")
    clock = ReplayClock(parse_time_ms(start, "--start") if start else None, speed)
    secret = settings.binance_api_secret.get_secret_value() if settings.binance_api_secret else None
    server = SimulatorServer(
        store,
        host=host,
        port=port,
        clock=clock,
        exchange=PaperExchange(fee_rate=settings.fee_rate),
        api_secret=secret,
        updates_per_kline=updates,
        with_app=lambda app: simulator_ops(app, new_registry()),
    )
    _quiet_libraries()

    async def serve() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await server.start()
        typer.echo(f"simulator: {server.base_url} (REST) {server.ws_url}/ws/<symbol>@kline_1h; symbols {store.symbols}")
        try:
            await stop.wait()
        finally:
            await server.stop()

    with suppress(KeyboardInterrupt):
        asyncio.run(serve())
    typer.echo("simulator stopped")


def register(app: typer.Typer) -> None:
    app.command("backfill")(backfill)
    app.command("validate")(validate)
    app.command("simulator")(simulator)
