"""``klinestream ingest`` and ``klinestream stream`` — the live path (websocket → Kafka → Spark → trader).

Heavy imports (python-binance, kafka-python, pyspark, torch) happen inside the command bodies.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from models.settings import Settings
    from streaming.micro_batch import BatchTrader

log = logging.getLogger(__name__)


def ingest(
    max_attempts: int = typer.Option(
        0, "--max-attempts", min=0, help="Give up after this many failed connections in a row (0 = never)."
    ),
) -> None:
    """Publish closed klines of the configured symbols from the Binance websocket (or the simulator) to Kafka.

    Reconnects with backoff and fills missed hours from the REST klines endpoint. Stop with Ctrl-C.
    """
    from models.settings import load_settings
    from streaming.ingestor import run_ingestor

    settings = load_settings()
    _quiet_libraries()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_ingestor(settings, stop, max_attempts or None)

    asyncio.run(main())


def stream(
    name: str = typer.Option(
        "klines-trader", "--name", help="Query name; checkpoints go to <home>/checkpoints/<name>."
    ),
    model_dir: Path = typer.Option(
        None, "--model-dir", help="Trade a saved policy folder instead of the MLflow champion (paper runs, demos)."
    ),
    max_offsets: int = typer.Option(5000, "--max-offsets", min=1, help="maxOffsetsPerTrigger of the Kafka source."),
    trigger_seconds: float = typer.Option(5.0, "--trigger-seconds", min=0.1, help="Micro-batch interval."),
    timeout_hours: int = typer.Option(
        2, "--timeout-hours", min=1, help="Decide hour t degraded once the traded symbol has hour t+N."
    ),
    available_now: bool = typer.Option(
        False, "--available-now", help="Process what Kafka holds, then stop (replays) instead of running forever."
    ),
) -> None:
    """Run the Spark job: Kafka klines.1h → DLQ for bad records → hour alignment → online trader → Cassandra."""
    from models.settings import load_settings
    from streaming.kafka_io import ensure_topics
    from streaming.spark_job import StreamOptions, run_stream
    from streaming.spark_session import build_spark_session

    settings = load_settings()
    _quiet_libraries()
    options = StreamOptions(
        name=name,
        max_offsets_per_trigger=max_offsets,
        trigger_seconds=trigger_seconds,
        timeout_hours=timeout_hours,
        available_now=available_now,
    )
    ensure_topics(settings)
    trader = build_trader(settings, options.name, model_dir)
    spark = build_spark_session(settings, f"klinestream-{name}")
    try:
        run_stream(spark, settings, trader, options)
    finally:
        spark.stop()


def build_trader(settings: Settings, name: str, model_dir: Path | None) -> BatchTrader:
    """The online trader of ``settings``: champion (or ``model_dir``), broker, Cassandra sink, checkpoints."""
    from streaming.brokers import make_broker
    from streaming.checkpoint import FileCheckpointStore
    from streaming.model_source import DirectoryModelSource
    from streaming.online_trader import OnlineTrader, TraderConfig
    from streaming.risk import RiskLimits

    if model_dir is None:
        raise typer.BadParameter(
            "trading the MLflow champion is not wired into `stream` yet: pass --model-dir <saved policy folder>",
            param_hint="--model-dir",
        )
    source = DirectoryModelSource({model_dir.name: model_dir}, model_dir.name)
    sink = _trade_sink(settings)
    checkpoints = FileCheckpointStore(settings.home / "checkpoints" / name / "trader")
    config = TraderConfig.from_settings(settings)
    return OnlineTrader.start(
        config, source, make_broker(settings), sink, checkpoints, RiskLimits.from_settings(settings)
    )


def _trade_sink(settings: Settings) -> Any:
    # the Cassandra sink is being written beside this command; resolved at run time until it lands
    try:
        module = importlib.import_module("streaming.cassandra_sink")
    except ImportError as exc:
        raise typer.BadParameter(f"the Cassandra sink is not available: {exc}") from exc
    return module.CassandraTradeSink.from_settings(settings)


def _quiet_libraries() -> None:
    for name in ("kafka", "py4j", "binance.ws"):
        logging.getLogger(name).setLevel(logging.WARNING)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("stream")(stream)
