"""``klinestream ingest`` and ``klinestream stream`` — the live path (websocket → Kafka → Spark → trader).

Heavy imports (python-binance, kafka-python, pyspark, torch) happen inside the command bodies.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from klinestream.commands.options import KillSwitchState, existing_folder, json_option, print_json, renamed

if TYPE_CHECKING:
    from models.alerts import AlertSink
    from models.settings import Settings
    from streaming.micro_batch import BatchTrader

log = logging.getLogger(__name__)


def ingest(
    max_attempts: int = typer.Option(
        0, "--max-attempts", min=0, help="Give up after this many failed connections in a row (0 = never)."
    ),
    idle_seconds: float = typer.Option(
        30.0, "--idle-seconds", min=1.0, help="Catch up from REST when the stream is silent this long."
    ),
) -> None:
    """Publish closed klines of the configured symbols from the Binance websocket (or the simulator) to Kafka.

    Reconnects with backoff and fills missed hours from the REST klines endpoint. Stop with Ctrl-C.
    """
    from klinestream.observability import start_ingestor_ops
    from models.settings import load_settings
    from streaming.ingestor import run_ingestor

    settings = load_settings()
    _quiet_libraries()
    ops = start_ingestor_ops(settings)  # /metrics, /health, /ready on KLINESTREAM_INGESTOR_METRICS_PORT

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_ingestor(settings, stop, max_attempts or None, idle_seconds, ops.metrics, ops.watch)

    try:
        asyncio.run(main())
    finally:
        ops.close()


def stream(
    name: str = typer.Option(
        "klines-trader", "--name", help="Query name; checkpoints go to <home>/checkpoints/<name>."
    ),
    model: Path | None = typer.Option(
        None, "--model", help="Trade a saved policy folder instead of the MLflow champion (demos, paper runs)."
    ),
    max_offsets: int = typer.Option(5000, "--max-offsets", min=1, help="maxOffsetsPerTrigger of the Kafka source."),
    trigger_seconds: float = typer.Option(
        0.05, "--trigger-seconds", min=0.01, help="How often the query looks for new klines (micro-batch interval)."
    ),
    timeout_hours: int = typer.Option(
        2, "--timeout-hours", min=1, help="Decide hour t degraded once the traded symbol has hour t+N."
    ),
    available_now: bool = typer.Option(
        False, "--available-now", help="Process what Kafka holds, then stop (replays) instead of running forever."
    ),
    online: bool = typer.Option(True, "--online/--no-online", help="Keep learning online (policy/target nets)."),
    shadow: bool = typer.Option(
        None,
        "--shadow/--no-shadow",
        help="Run the registry's challenger beside the champion, without orders (default: "
        "KLINESTREAM_SHADOW_CHALLENGER).",
        show_default=False,
    ),
    model_dir: Path | None = typer.Option(None, "--model-dir", hidden=True, help="Deprecated: --model."),
) -> None:
    """Run the Spark job: Kafka klines.1h → DLQ for bad records → hour alignment → online trader → Cassandra.

    Beside the champion's trader: the live monitor (KLINESTREAM_MONITOR_*) and, with --shadow, the challenger
    in shadow mode (trader <trader id>.shadow)."""
    from adapters.kafka import require_topics
    from adapters.mlflow.accounts import use_account
    from klinestream.observability import start_stream_ops
    from models.credentials import KafkaPrincipal, MlflowAccount
    from models.settings import load_settings
    from streaming.spark_job import StreamOptions, checkpoint_root, run_stream_restarting
    from streaming.spark_session import build_spark_session, stop_spark

    policy_dir = existing_folder(renamed(model, model_dir, "--model-dir", "--model"), "--model")
    settings = load_settings()
    if shadow is not None:
        settings = settings.model_copy(update={"shadow_challenger": shadow})
    _quiet_libraries()
    options = StreamOptions(
        name=name,
        max_offsets_per_trigger=max_offsets,
        trigger_seconds=trigger_seconds,
        timeout_hours=timeout_hours,
        available_now=available_now,
    )
    require_topics(settings, KafkaPrincipal.STREAM)  # `klinestream stack up` (the admin path) creates them
    use_account(settings, MlflowAccount.STREAM)  # reads the registered model; may not move its aliases
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # a service manager's stop, or Ctrl-C: stop cleanly
        signal.signal(sig, lambda *_: stop.set())
    # metrics, alerts and /metrics /health /ready (KLINESTREAM_STREAM_METRICS_PORT; 0 = no endpoint)
    spark_checkpoints = checkpoint_root(settings, options) / "spark"
    ops = start_stream_ops(settings, spark_checkpoints, not available_now, policy_dir is None)
    alerts = ops.monitor.alerts
    spark = build_spark_session(settings, f"klinestream-{name}")
    try:
        # a micro-batch that fails is retried on a trader restored from its checkpoint, then set aside
        run_stream_restarting(spark, settings, lambda: ops.track(build_trader(settings, policy_dir, online, alerts)),
                              options, close_trader=_close_trader, stop=stop, alerts=alerts,
                              on_outcome=ops.monitor.on_outcome)  # fmt: skip
    finally:
        stop_spark(spark)
        ops.close()
    log.info("stream stopped name=%s", name)


def build_trader(
    settings: Settings, model_dir: Path | None = None, online: bool = True, alerts: AlertSink | None = None
) -> BatchTrader:
    """The traders of ``settings`` (streaming/trader_group.py): the MLflow champion (or a saved policy folder)
    with the broker of the trading mode and Cassandra for decisions, orders, positions, checkpoints and the kill
    switch; the MLflow challenger in shadow mode when ``shadow_challenger`` is set; the live monitor."""
    from models.ports import ChampionRegistry, ModelSource
    from streaming.live_trader import start_trader_group
    from streaming.model_source import DirectoryModelSource

    source: ModelSource
    challenger: ModelSource | None = None
    registry: ChampionRegistry | None = None
    if model_dir is not None:
        source = DirectoryModelSource({model_dir.name: model_dir}, model_dir.name)
        if settings.shadow_challenger:
            log.warning("no shadow challenger: a model folder has no registry to read the challenger from")
    else:
        from adapters.mlflow.aliases import MlflowChampionRegistry
        from adapters.mlflow.registry import CHALLENGER, MlflowModelSource
        from streaming.model_source import PollingModelSource

        uri, name = settings.mlflow_tracking_uri, settings.mlflow_model_name
        source = PollingModelSource(MlflowModelSource(uri, name))
        if settings.shadow_challenger:
            challenger = PollingModelSource(MlflowModelSource(uri, name, alias=CHALLENGER))
        registry = MlflowChampionRegistry(uri, name)
    return start_trader_group(settings, source, challenger, registry, online=online, alerts=alerts)


def _close_trader(trader: BatchTrader) -> None:
    close = getattr(trader, "close", None)
    if callable(close):
        close()


def _quiet_libraries() -> None:
    for name in ("kafka", "py4j", "binance.ws"):
        logging.getLogger(name).setLevel(logging.WARNING)


def kill_switch(
    state: KillSwitchState = typer.Argument(..., help="Stop new orders (on), allow them (off), or show the switch."),
    reason: str = typer.Option("operator", "--reason", help="Why (recorded beside the switch)."),
    trader: str = typer.Option(None, "--trader", help="Only this trader id (default: every trader)."),
    as_json: bool = json_option(),
) -> None:
    """Stop (on) or allow (off) new orders of running traders within one micro-batch; decisions go on."""
    from adapters.cassandra.controls import CassandraControls
    from adapters.cassandra.session import CassandraSession
    from models.credentials import CassandraRole
    from models.settings import load_settings

    db = CassandraSession.connect(load_settings(), CassandraRole.OPERATOR, max_outage_seconds=30)
    try:
        controls = CassandraControls(db)
        if state != "status":
            controls.set_kill_switch(state == "on", reason, trader)
        active = controls.kill_switch_active(trader)
    finally:
        db.close()
    if as_json:
        print_json({"kill_switch": "on" if active else "off", "active": active, "trader": trader})
        return
    typer.echo(
        f"kill switch {'ON: new orders stopped' if active else 'off'}" + (f" (trader {trader})" if trader else "")
    )


def bot(
    poll_timeout: int = typer.Option(10, "--poll-timeout", min=1, max=50, help="getUpdates long-poll seconds."),
) -> None:
    """Run the Telegram bot (/status /profit /daily /champion /kill /resume) for KLINESTREAM_TELEGRAM_CHAT_IDS."""
    from adapters.cassandra.session import CassandraSession
    from klinestream.bot.app import KlinestreamBot
    from klinestream.bot.backend import OpsBackend
    from models.credentials import CassandraRole
    from models.errors import SettingsError
    from models.settings import load_settings

    settings = load_settings()
    token = settings.telegram_bot_token
    if token is None:
        raise SettingsError("KLINESTREAM_TELEGRAM_BOT_TOKEN is not set: the bot has nothing to log in with")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per long poll otherwise
    db = CassandraSession.connect(settings, CassandraRole.OPERATOR, max_outage_seconds=60)
    try:
        app = KlinestreamBot(OpsBackend(settings, db), settings.telegram_chat_ids).application(
            token.get_secret_value(), settings.telegram_api_url, poll_timeout
        )
        log.info("telegram bot polling api=%s chats=%s", settings.telegram_api_url, list(settings.telegram_chat_ids))
        app.run_polling(timeout=poll_timeout, allowed_updates=["message", "callback_query"])  # SIGTERM/SIGINT stop it
    finally:
        db.close()


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("stream")(stream)
    app.command("kill-switch")(kill_switch)
    app.command("bot")(bot)
