"""Spark Structured Streaming reads Kafka through the real connector, exactly once across a restart."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from models.credentials import KafkaPrincipal
from models.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _produce(settings: Settings, topic: str, values: list[str]) -> None:
    from kafka import KafkaProducer

    from adapters.kafka import client_config

    producer = KafkaProducer(**client_config(settings, KafkaPrincipal.WRITER, acks="all", enable_idempotence=True))
    try:
        for value in values:
            producer.send(topic, key=b"BTCUSDT", value=value.encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def _drain(spark: Any, settings: Settings, topic: str, checkpoint: Path) -> list[tuple[int, list[str]]]:
    """Run the query once with ``availableNow``; return what each micro-batch saw."""
    from adapters.kafka_auth import spark_security_options

    batches: list[tuple[int, list[str]]] = []

    def collect(frame: Any, batch_id: int) -> None:
        batches.append((batch_id, [row.value for row in frame.selectExpr("CAST(value AS STRING) AS value").collect()]))

    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .options(**spark_security_options(settings, KafkaPrincipal.WRITER))
        .load()
    )
    query = (
        stream.writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(timeout=240)
    assert not query.isActive, "the availableNow query did not finish in 240 s"
    assert query.exception() is None
    return batches


def _values(batches: list[tuple[int, list[str]]]) -> Counter[str]:
    return Counter(value for _, values in batches for value in values)


def test_every_record_is_seen_exactly_once_across_a_restart_on_the_same_checkpoint(
    spark: Any, settings: Settings, kafka_topic: str, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    first = [f"kline-{i}" for i in range(20)]
    _produce(settings, kafka_topic, first)

    before = _drain(spark, settings, kafka_topic, checkpoint)
    assert _values(before) == Counter(first)

    second = [f"kline-{i}" for i in range(20, 35)] + ["kline-3"]  # a repeated payload is a new record
    _produce(settings, kafka_topic, second)
    after = _drain(spark, settings, kafka_topic, checkpoint)

    assert _values(after) == Counter(second)
    assert min(batch_id for batch_id, _ in after) > max(batch_id for batch_id, _ in before)
    assert _values(before) + _values(after) == Counter(first + second)

    again = _drain(spark, settings, kafka_topic, checkpoint)
    assert _values(again) == Counter()
