"""Kafka round trip: records produced by an idempotent ``acks=all`` producer come back in order, once."""

from __future__ import annotations

import pytest

from models.credentials import KafkaPrincipal
from models.settings import Settings

pytestmark = pytest.mark.integration


def test_records_produced_idempotently_are_consumed_in_order_exactly_once(kafka_topic: str, settings: Settings) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    from adapters.kafka import client_config

    sent = [(f"BTCUSDT-{i}".encode(), f'{{"open_time": {i * 3_600_000}}}'.encode()) for i in range(50)]
    producer = KafkaProducer(
        **client_config(settings, KafkaPrincipal.WRITER, acks="all", enable_idempotence=True, linger_ms=5)
    )
    try:
        metadata = [producer.send(kafka_topic, key=key, value=value).get(timeout=30) for key, value in sent]
    finally:
        producer.close()
    assert [m.offset for m in metadata] == list(range(50))

    consumer = KafkaConsumer(
        kafka_topic,
        **client_config(
            settings,
            KafkaPrincipal.WRITER,
            group_id=f"{kafka_topic}.reader",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=10_000,
        ),
    )
    try:
        received = []
        for record in consumer:
            received.append((record.key, record.value))
            if len(received) == len(sent):
                break
    finally:
        consumer.close()

    assert received == sent
