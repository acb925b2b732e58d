"""Helpers of the live-path integration tests: live-path settings on fresh topics, reading topics back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from models.settings import Settings


@dataclass(frozen=True)
class Consumed:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


@contextmanager
def live_topics(settings: Settings, **changes: object) -> Iterator[Settings]:
    """Settings whose ``klines.1h`` and ``klines.dlq`` are fresh topics (created, deleted afterwards)."""
    from kafka import KafkaAdminClient

    from streaming.kafka_io import ensure_topics

    tag = uuid.uuid4().hex[:10]
    update = {"kafka_topic_klines": f"test.klines.{tag}", "kafka_topic_dlq": f"test.dlq.{tag}", **changes}
    live = settings.model_copy(update=update)
    ensure_topics(live)
    try:
        yield live
    finally:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="klinestream-tests")
        try:
            admin.delete_topics([live.kafka_topic_klines, live.kafka_topic_dlq])
        finally:
            admin.close()


def read_topic(settings: Settings, topic: str) -> list[Consumed]:
    """Every record of partition 0 of ``topic``, from the beginning to the current end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, consumer_timeout_ms=5000
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek_to_beginning(tp)
        out: list[Consumed] = []
        while len(out) < end:
            batch = consumer.poll(timeout_ms=5000)
            if not batch:
                break
            for message in batch.get(tp, []):
                out.append(Consumed(message.offset, message.key, message.value, dict(message.headers or [])))
        return out
    finally:
        consumer.close()
