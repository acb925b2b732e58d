"""The Spark Structured Streaming job: Kafka ``klines.1h`` → judge / align on the driver → online trader.

The stream reads ``klines.1h`` through the spark-sql-kafka connector (``startingOffsets`` earliest,
``maxOffsetsPerTrigger`` bounded) and parses the value with a Spark schema *derived* from the kline
contract (:func:`kline_value_schema`, generated from :class:`models.kline.Kline`'s fields). Each
micro-batch is collected to the driver — hourly klines of a handful of symbols, bounded by
``maxOffsetsPerTrigger`` — and handed to :class:`streaming.micro_batch.MicroBatchProcessor`, which decides
validity with :func:`streaming.dlq.judge` (the signature, then the strict record contract of
models/kline_record.py, so Spark and Python cannot disagree on routing), writes bad records to
``klines.dlq``, aligns hours and calls the trader. The source reads the record headers (``includeHeaders``)
for the signature. Spark's
own parse of every accepted record is compared with Python's: a difference is logged as an error (schema
drift).

Durable state lives under ``<home>/checkpoints/<name>/``: ``spark/`` (Spark's offset and commit logs)
and ``aligner/`` (the driver's per-batch state and the failed attempts of micro-batches, see
:mod:`streaming.batch_state`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import DataType, DoubleType, LongType, StringType, StructField, StructType

from adapters.kafka import KafkaDlqWriter, KafkaProducer, build_producer
from adapters.kafka_auth import spark_security_options
from models.alerts import AlertSink
from models.credentials import KafkaPrincipal
from models.errors import KlineParseError, PermanentError, ServiceError
from models.kline import Kline, parse_record
from models.settings import Settings
from streaming.batch_state import BatchFailures, BatchStateStore
from streaming.dlq import MAX_RECORD_BYTES, RawRecord
from streaming.micro_batch import AlignerConfig, BatchOutcome, BatchTrader, MicroBatchProcessor

log = logging.getLogger(__name__)

_SPARK_TYPES: dict[type, DataType] = {str: StringType(), int: LongType(), float: DoubleType()}
#: Fields :meth:`Kline.to_json` adds to the kline in a Kafka value.
ENVELOPE: dict[str, type] = {"schema_version": int, "source": str}


def _spark_field(name: str, hint: Any) -> StructField:
    nullable = False
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        nullable = type(None) in args
        concrete = [a for a in args if a is not type(None)]
        if len(concrete) != 1:
            raise TypeError(f"kline field {name}: cannot map {hint} to a Spark type")
        hint = concrete[0]
    if hint not in _SPARK_TYPES:
        raise TypeError(f"kline field {name}: no Spark type for {hint}")
    return StructField(name, _SPARK_TYPES[hint], nullable)


def kline_value_schema() -> StructType:
    """The Spark schema of a ``klines.1h`` value, generated from the :class:`Kline` dataclass and the
    envelope (``schema_version``, ``source``): add a field to the contract and the schema follows."""
    hints = typing.get_type_hints(Kline)
    fields = [_spark_field(f.name, hints[f.name]) for f in dataclasses.fields(Kline)]
    fields += [_spark_field(name, hint) for name, hint in ENVELOPE.items()]
    return StructType(fields)


@dataclass(frozen=True)
class StreamOptions:
    """Knobs of the streaming query."""

    name: str = "klines-trader"
    max_offsets_per_trigger: int = 5000
    trigger_seconds: float = 0.05
    """How often Spark looks for new offsets: the latency floor at live pace. An idle query costs about 7% of
    a core at 0.05 s (6% at 0.1 s, 0.5% at 1 s), measured on the 2-core machine."""
    available_now: bool = False
    """Process what the topic holds, then stop (replays, tests) instead of running forever."""
    timeout_hours: int = 2
    max_record_bytes: int = MAX_RECORD_BYTES
    max_ahead_hours: int = 24
    """A kline further than this past the stream's trusted clock is dead-lettered as a clock outlier."""
    starting_offsets: str = "earliest"
    checkpoint_dir: Path | None = None
    """Where the query's durable state goes; default ``<home>/checkpoints/<name>``."""
    fetch_max_wait_ms: int = 10
    """The source's Kafka ``fetch.max.wait.ms``. At the client default (500 ms) the executor's consumer waits
    on an empty follow-up fetch, and a micro-batch of five klines took about 600 ms to collect instead of 60."""


def checkpoint_root(settings: Settings, options: StreamOptions) -> Path:
    return options.checkpoint_dir or settings.home / "checkpoints" / options.name


def read_klines(spark: SparkSession, settings: Settings, options: StreamOptions) -> DataFrame:
    """The raw stream of ``klines.1h`` plus the value parsed with :func:`kline_value_schema` (``kline``)."""
    raw = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
        .option("subscribe", settings.kafka_topic_klines)
        .option("startingOffsets", options.starting_offsets)
        .option("maxOffsetsPerTrigger", str(options.max_offsets_per_trigger))
        .option("failOnDataLoss", "true")
        .option("kafka.fetch.max.wait.ms", str(options.fetch_max_wait_ms))
        .option("includeHeaders", "true")
        .options(**spark_security_options(settings, KafkaPrincipal.STREAM))
        .load()
    )
    return raw.select(
        "topic",
        "partition",
        "offset",
        "key",
        "value",
        "headers",
        F.unix_millis("timestamp").alias("timestamp_ms"),
        F.from_json(F.col("value").cast("string"), kline_value_schema(), {"mode": "PERMISSIVE"}).alias("kline"),
    )


def collect_batch(batch: DataFrame) -> tuple[list[RawRecord], dict[tuple[int, int], Row | None]]:
    """Collect a micro-batch to the driver: the :class:`RawRecord` in (partition, offset) order, and Spark's
    own parse of each value with :func:`kline_value_schema`, keyed by (partition, offset)."""
    rows = batch.select("topic", "partition", "offset", "key", "value", "timestamp_ms", "headers", "kline").collect()
    # sorted on the driver: a Spark ``orderBy`` would add a sampling job and a shuffle to every micro-batch
    rows.sort(key=lambda r: (r["partition"], r["offset"]))
    records: list[RawRecord] = []
    parsed: dict[tuple[int, int], Row | None] = {}
    for row in rows:
        partition, offset = int(row["partition"]), int(row["offset"])
        key, value = row["key"], row["value"]
        key = None if key is None else bytes(key)
        value = None if value is None else bytes(value)
        headers = tuple((h["key"], None if h["value"] is None else bytes(h["value"])) for h in row["headers"] or ())
        records.append(RawRecord(row["topic"], partition, offset, key, value, int(row["timestamp_ms"] or 0), headers))
        parsed[(partition, offset)] = row["kline"]
    return records, parsed


def spark_disagrees(spark_kline: Row | None, value: bytes | None, kline: Kline | None = None) -> bool:
    """True when Python accepts ``value`` as a kline (``kline``, if already parsed) but Spark's parse of it
    differs in any field."""
    if kline is None:
        try:
            kline = parse_record(value or b"")
        except KlineParseError:
            return False
    if spark_kline is None:
        return True
    parsed = spark_kline.asDict()
    expected = kline.to_dict()
    expected["symbol"], parsed["symbol"] = kline.symbol, str(parsed.get("symbol") or "").upper()
    return any(parsed.get(name) != wanted for name, wanted in expected.items())


def build_processor(
    settings: Settings,
    trader: BatchTrader,
    options: StreamOptions,
    producer: KafkaProducer,
    alerts: AlertSink | None = None,
) -> MicroBatchProcessor:
    signer = settings.kline_signer()
    if signer is None:
        log.warning("kline signing off: KLINESTREAM_KLINE_SIGNING_KEY is unset, every well-formed record is trusted")
    config = AlignerConfig(
        tuple(settings.symbols), settings.traded_symbol, options.timeout_hours, options.max_record_bytes,
        options.max_ahead_hours, settings.stream_start_ms, signer, int(settings.clock_skew_seconds * 1000),
        live=not options.available_now, max_batch_attempts=settings.max_batch_attempts,
    )  # fmt: skip
    state = BatchStateStore(checkpoint_root(settings, options) / "aligner")
    return MicroBatchProcessor(config, trader, KafkaDlqWriter(producer, settings.kafka_topic_dlq), state, alerts)


def foreach_batch(
    processor: MicroBatchProcessor, on_outcome: Callable[[BatchOutcome], None] | None = None
) -> Callable[[DataFrame, int], None]:
    """The ``foreachBatch`` function: runs on the driver once per micro-batch."""

    def run(batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        records, spark_parsed = collect_batch(batch)
        outcome = processor.process(int(batch_id), records)
        # the records the trader got, parsed once by parse_record, against Spark's parse of the same bytes
        outcome.schema_disagreements = sum(
            spark_disagrees(spark_parsed.get((a.record.partition, a.record.offset)), a.record.value, a.kline)
            for a in outcome.accepted_items
        )
        if outcome.schema_disagreements:
            log.error("spark schema disagrees with parse_record batch_id=%d records=%d", batch_id,
                      outcome.schema_disagreements)  # fmt: skip
        outcome.seconds = time.perf_counter() - started
        if on_outcome is not None:
            on_outcome(outcome)

    return run


def start_stream(
    spark: SparkSession,
    settings: Settings,
    trader: BatchTrader,
    options: StreamOptions,
    producer: KafkaProducer,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
    alerts: AlertSink | None = None,
    processor: MicroBatchProcessor | None = None,
) -> StreamingQuery:
    """Start the query (checkpointed under ``<home>/checkpoints/<name>/spark``) and return it."""
    check_checkpoint_pair(settings, options, trader)
    processor = processor or build_processor(settings, trader, options, producer, alerts)
    writer = (
        read_klines(spark, settings, options)
        .writeStream.queryName(options.name.replace("-", "_"))
        .option("checkpointLocation", str(checkpoint_root(settings, options) / "spark"))
        .foreachBatch(foreach_batch(processor, on_outcome))
    )
    if options.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{options.trigger_seconds} seconds")
    query = writer.start()
    log.info("stream started name=%s topic=%s id=%s", options.name, settings.kafka_topic_klines, query.id)
    return query


def last_committed_batch(spark_checkpoint: Path) -> int:
    """The newest batch id Spark committed under ``spark_checkpoint`` (-1 when none)."""
    commits = spark_checkpoint / "commits"
    ids = [int(p.name) for p in commits.iterdir() if p.name.isdigit()] if commits.is_dir() else []
    return max(ids, default=-1)


def committed_offsets(spark_checkpoint: Path, topic: str) -> dict[int, int]:
    """The next offset of each partition of ``topic`` after the newest batch Spark committed (empty before
    the first commit): the stream's position, which Kafka consumer lag is measured from. Read from Spark's
    offset log ``offsets/<batch>``: a version line, the batch metadata, then one JSON line per source."""
    batch = last_committed_batch(spark_checkpoint)
    path = spark_checkpoint / "offsets" / str(batch)
    if batch < 0 or not path.is_file():
        return {}
    for line in path.read_text().splitlines()[2:]:
        try:
            source = json.loads(line)
        except ValueError:
            continue
        if isinstance(source, dict) and topic in source:
            return {int(p): int(o) for p, o in source[topic].items()}
    return {}


def check_checkpoint_pair(settings: Settings, options: StreamOptions, trader: BatchTrader) -> None:
    """Refuse to start when the trader's checkpoint is ahead of Spark's by more than the one batch a crash
    can leave uncommitted: a fresh Spark checkpoint would number batches from 0 again and the trader would
    skip them as already processed. The two checkpoints are reset together, or the query renamed."""
    trader_batch = getattr(trader, "last_batch_id", None)
    if not isinstance(trader_batch, int):
        return
    spark_dir = checkpoint_root(settings, options) / "spark"
    committed = last_committed_batch(spark_dir)
    if trader_batch > committed + 1:
        raise PermanentError(
            f"the trader's checkpoint is at batch {trader_batch} but Spark's ({spark_dir}) at {committed}: "
            "reset both together (or run under a new trader id), never one alone"
        )


def failure_reason(message: str) -> str:
    """The line of a failed query's message that names the error (the Python one inside foreachBatch if any)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Failed): ", line)]
    return (named[-1] if named else lines[0] if lines else "unknown error")[:300]


def run_stream(
    spark: SparkSession,
    settings: Settings,
    trader: BatchTrader,
    options: StreamOptions,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
    stop: threading.Event | None = None,
    alerts: AlertSink | None = None,
) -> None:
    """Run the job until ``stop`` is set (then the query is stopped within about a second) or,
    with ``available_now``, until the topic is drained. A run that read records and kept none raises
    :class:`~streaming.micro_batch.EmptyRunError` (after an ``empty_run`` alert): it never reports success."""
    producer = build_producer(settings, client_id=f"klinestream-{options.name}-dlq", principal=KafkaPrincipal.STREAM)
    try:
        processor = build_processor(settings, trader, options, producer, alerts)
        query = start_stream(spark, settings, trader, options, producer, on_outcome, processor=processor)
        while not query.awaitTermination(1):
            if stop is not None and stop.is_set():
                log.info("stream stopping name=%s: asked to stop", options.name)
                query.stop()  # a batch cut short is replayed under its id at the next start (exactly once)
                break
    except StreamingQueryException as exc:
        raise ServiceError(f"stream {options.name} stopped: {failure_reason(str(exc))}") from exc
    finally:
        producer.flush()
        producer.close()
    processor.finish()


def run_stream_restarting(
    spark: SparkSession,
    settings: Settings,
    make_trader: Callable[[], BatchTrader],
    options: StreamOptions,
    close_trader: Callable[[BatchTrader], None] = lambda trader: None,
    stop: threading.Event | None = None,
    alerts: AlertSink | None = None,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
) -> None:
    """:func:`run_stream` with a fresh trader (restored from its checkpoint) after each micro-batch failure the
    processor recorded: like a supervisor's restart, so a batch that keeps failing is set aside after
    ``max_batch_attempts`` (streaming/micro_batch.py) and the stream goes on. Other failures are raised."""
    failures = BatchFailures(checkpoint_root(settings, options) / "aligner" / "failures.json")
    for restart in range(settings.max_batch_attempts + 1):
        trader = make_trader()
        try:
            run_stream(spark, settings, trader, options, on_outcome=on_outcome, stop=stop, alerts=alerts)
            return
        except ServiceError as exc:
            if not failures.failed_batches() or restart == settings.max_batch_attempts:
                raise
            log.warning("stream restarting name=%s after a failed micro-batch (%s): %s", options.name,
                        failures.failed_batches(), exc)  # fmt: skip
        finally:
            close_trader(trader)
