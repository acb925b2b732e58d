"""Kafka plumbing of the live path (docs/architecture.md, "Kafka"): topics, the idempotent producer,
publishing klines to ``klines.1h`` (the ingestor's sink), DLQ records and their writer (the Spark job's),
and the tail of ``klines.1h``.

kafka-python errors are translated at this boundary into :class:`~models.errors.TemporaryError`
(broker unavailable, timeouts) so that callers retry with backoff and see no vendor types.

Every client names the principal it acts as (models/credentials.py): the ingestor, the stream, the writer
of tests and demos, or the admin, which alone creates and deletes topics and sets their ACLs
(adapters/kafka_auth.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError

from adapters.kafka_auth import client_security, grant_topics, revoke_topics
from models.credentials import KafkaPrincipal
from models.errors import KlineParseError, ServiceError, TemporaryError
from models.kline import Kline, parse_record
from models.settings import Settings
from models.signing import KlineSigner

log = logging.getLogger(__name__)

#: Kafka headers of a DLQ record; its value is the original bytes, unchanged.
DLQ_REASON = "dlq.reason"
DLQ_TOPIC = "dlq.topic"
DLQ_PARTITION = "dlq.partition"
DLQ_OFFSET = "dlq.offset"


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """A record of ``klines.1h`` that failed to parse or validate, with why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    extra_headers: tuple[tuple[str, bytes], ...] = ()
    """More headers (streaming/dlq.py: the payload's hash and size, whether the value was cut, the source key)."""

    @property
    def dlq_key(self) -> bytes:
        """Deterministic key (source coordinates): a replayed micro-batch rewrites the same keys."""
        return f"{self.topic}/{self.partition}/{self.offset}".encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (DLQ_REASON, self.reason.encode()),
            (DLQ_TOPIC, self.topic.encode()),
            (DLQ_PARTITION, str(self.partition).encode()),
            (DLQ_OFFSET, str(self.offset).encode()),
            *self.extra_headers,
        ]


def _unavailable(settings: Settings, exc: Exception) -> TemporaryError:
    return TemporaryError(f"kafka unavailable at {settings.kafka_bootstrap_servers}: {exc}")


def client_config(settings: Settings, principal: KafkaPrincipal, **config: Any) -> dict[str, Any]:
    """kafka-python keyword arguments: the bootstrap servers, ``principal``'s login, then ``config``."""
    return {"bootstrap_servers": settings.kafka_bootstrap_servers, **client_security(settings, principal), **config}


def build_producer(settings: Settings, client_id: str, principal: KafkaPrincipal, **overrides: Any) -> KafkaProducer:
    """The producer of the live path, logged in as ``principal``: idempotent, ``acks=all``, bytes in and out."""
    config = client_config(
        settings,
        principal,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_in_flight_requests_per_connection=5,
    )
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except KafkaError as exc:
        raise _unavailable(settings, exc) from exc


def admin_client(settings: Settings, client_id: str = "klinestream-admin", **config: Any) -> KafkaAdminClient:
    """An admin client logged in as the admin principal (the only one allowed to create topics)."""
    try:
        return KafkaAdminClient(**client_config(settings, KafkaPrincipal.ADMIN, client_id=client_id, **config))
    except KafkaError as exc:
        raise _unavailable(settings, exc) from exc


def ensure_topics(settings: Settings, topics: Iterable[str] | None = None, partitions: int = 1) -> list[str]:
    """The admin path: create the topics that do not exist yet (default: the live-path pair) and grant the
    principals their ACLs on them (adapters/kafka_auth.py); idempotent. Returns the topics it created."""
    wanted = list(topics) if topics is not None else [settings.kafka_topic_klines, settings.kafka_topic_dlq]
    admin = admin_client(settings)
    created = []
    try:
        existing = set(admin.list_topics())
        for topic in wanted:
            if topic in existing:
                continue
            try:
                admin.create_topics(
                    {topic: {"num_partitions": partitions, "replication_factor": 1}}, wait_for_metadata=True
                )
                created.append(topic)
                log.info("created topic=%s partitions=%d", topic, partitions)
            except TopicAlreadyExistsError:
                log.info("topic=%s created concurrently", topic)
        grant_topics(admin, settings, wanted)
    except KafkaError as exc:
        raise TemporaryError(f"creating topics {wanted} failed: {exc}") from exc
    finally:
        admin.close()
    return created


def delete_topics(
    settings: Settings, topics: Iterable[str] | None = None, client_id: str = "klinestream-admin"
) -> None:
    """Delete ``topics`` (default: the live-path topics of ``settings``) and their ACLs, as the admin."""
    wanted = list(topics) if topics is not None else [settings.kafka_topic_klines, settings.kafka_topic_dlq]
    admin = admin_client(settings, client_id)
    try:
        admin.delete_topics(wanted)
        revoke_topics(admin, settings, wanted)
    finally:
        admin.close()


def require_topics(settings: Settings, principal: KafkaPrincipal, topics: Iterable[str] | None = None) -> None:
    """Fail with a clear error unless ``topics`` (default: the live-path pair) exist and ``principal`` may see
    them. The ingestor and the stream call this instead of creating topics: only the admin path creates them."""
    wanted = list(topics) if topics is not None else [settings.kafka_topic_klines, settings.kafka_topic_dlq]
    with _consumer(settings, principal) as consumer:
        try:
            visible = consumer.topics()
        except KafkaError as exc:
            raise _unavailable(settings, exc) from exc
    missing = [topic for topic in wanted if topic not in visible]
    if missing:
        raise ServiceError(
            f"kafka topics {missing} do not exist or {principal.value} may not see them: "
            "`klinestream stack up` creates the live-path topics and their ACLs (the admin path)"
        )


def send_dlq(producer: KafkaProducer, topic: str, records: Iterable[DlqRecord]) -> int:
    """Write DLQ records (value = original bytes, reason in headers) and wait until they are durable."""
    futures = [
        producer.send(topic, key=record.dlq_key, value=record.value or b"", headers=record.headers())
        for record in records
    ]
    try:
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    except KafkaError as exc:
        raise TemporaryError(f"writing {len(futures)} DLQ records to {topic} failed: {exc}") from exc
    return len(futures)


@contextmanager
def _consumer(settings: Settings, principal: KafkaPrincipal) -> Iterator[KafkaConsumer]:
    try:
        consumer = KafkaConsumer(
            **client_config(
                settings,
                principal,
                enable_auto_commit=False,
                group_id=None,
                client_id="klinestream-tail",
                consumer_timeout_ms=5000,
            )
        )
    except KafkaError as exc:
        raise _unavailable(settings, exc) from exc
    try:
        yield consumer
    finally:
        consumer.close()


def last_published_hours(
    settings: Settings,
    lookback: int = 2000,
    signer: KlineSigner | None = None,
    now_ms: int | None = None,
    principal: KafkaPrincipal = KafkaPrincipal.INGESTOR,
) -> dict[str, int]:
    """The latest ``open_time`` per symbol among the last ``lookback`` records of each partition of
    ``klines.1h``. Empty when the topic is empty or missing. Ignored: unparseable records, records without a
    valid signature when ``signer`` is set, and klines closing after ``now_ms`` (default: now) plus the
    clock skew — a forged record dated 2030 must not make the ingestor believe it has published up to 2030."""
    limit = (now_ms if now_ms is not None else int(time.time() * 1000)) + int(settings.clock_skew_seconds * 1000)
    topic = settings.kafka_topic_klines
    latest: dict[str, int] = {}
    with _consumer(settings, principal) as consumer:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return latest
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - lookback))
        remaining = {tp for tp in tps if ends[tp] > begins[tp]}
        while remaining:
            batch = consumer.poll(timeout_ms=2000)
            if not batch:
                break
            for tp, messages in batch.items():
                for message in messages:
                    headers = message.headers or []
                    if signer is None or signer.verify(message.key, message.value or b"", headers) is None:
                        _note_latest(latest, message.value, limit)
                    if message.offset >= ends[tp] - 1:
                        remaining.discard(tp)
    return latest


def _note_latest(latest: dict[str, int], value: bytes | None, close_limit: int) -> None:
    if value is None:
        return
    try:
        kline = parse_record(value)
    except KlineParseError:
        return
    if kline.event_time <= close_limit and kline.open_time > latest.get(kline.symbol, -1):
        latest[kline.symbol] = kline.open_time


class KafkaKlineSink:
    """Publishes klines to ``topic``: key = symbol, value = :meth:`Kline.to_json`, signed when ``signer`` is set."""

    def __init__(self, producer: KafkaProducer, topic: str, signer: KlineSigner | None = None) -> None:
        self.producer = producer
        self.topic = topic
        self.signer = signer
        self._pending: list[Any] = []

    def publish(self, kline: Kline, source: str) -> None:
        key, value = kline.symbol.encode(), kline.to_json(source)
        headers = self.signer.headers(key, value) if self.signer is not None else None
        self._pending.append(self.producer.send(self.topic, key=key, value=value, headers=headers))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            self.producer.flush()
            for future in pending:
                future.get(timeout=30)
        except KafkaError as exc:
            raise TemporaryError(f"publishing {len(pending)} klines to {self.topic} failed: {exc}") from exc


def publish_klines(
    settings: Settings,
    klines: Iterable[Kline],
    source: str,
    client_id: str,
    principal: KafkaPrincipal = KafkaPrincipal.WRITER,
) -> None:
    """Publish ``klines`` to ``klines.1h`` with a short-lived idempotent producer, and wait until durable
    (as the writer principal by default: tests, the demo's seed and the bench publish this way)."""
    producer = build_producer(settings, client_id=client_id, principal=principal)
    try:
        sink = KafkaKlineSink(producer, settings.kafka_topic_klines, settings.kline_signer())
        for kline in klines:
            sink.publish(kline, source)
        sink.flush()
    finally:
        producer.close()


class KafkaDlqWriter:
    """Writes DLQ records to ``klines.dlq`` with the driver's idempotent producer."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def write(self, records: Sequence[DlqRecord]) -> int:
        return send_dlq(self.producer, self.topic, records)


class EndOffsets:
    """The end offset of each partition of ``topic`` (Kafka consumer lag = these − a consumer's position),
    on one client kept open between calls (the stream's monitor asks every few seconds)."""

    def __init__(self, settings: Settings, topic: str, principal: KafkaPrincipal, timeout_ms: int = 3000) -> None:
        self.settings, self.topic, self.principal, self.timeout_ms = settings, topic, principal, timeout_ms
        self._consumer: KafkaConsumer | None = None

    def __call__(self) -> dict[int, int]:
        try:
            if self._consumer is None:
                self._consumer = KafkaConsumer(
                    **client_config(self.settings, self.principal, enable_auto_commit=False, group_id=None,
                                    client_id="klinestream-lag", request_timeout_ms=self.timeout_ms + 1000)
                )  # fmt: skip
            consumer = self._consumer
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                raise TemporaryError(f"topic {self.topic} has no partitions (missing?)")
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            ends = consumer.end_offsets(tps)
        except KafkaError as exc:
            self.close()
            raise TemporaryError(f"kafka unavailable at {self.settings.kafka_bootstrap_servers}: {exc}") from exc
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()
