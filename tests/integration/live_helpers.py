"""Helpers of the live-path integration tests: live-path settings on fresh topics, reading topics back."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.kline import Kline
from models.settings import Settings

if TYPE_CHECKING:
    from streaming.ingestor import Ingestor


@dataclass(frozen=True)
class Consumed:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


@contextmanager
def live_topics(settings: Settings, **changes: object) -> Iterator[Settings]:
    """Settings whose ``klines.1h`` and ``klines.dlq`` are fresh topics (created, deleted afterwards)."""

    from adapters.kafka import delete_topics, ensure_topics

    tag = uuid.uuid4().hex[:10]
    update = {"kafka_topic_klines": f"test.klines.{tag}", "kafka_topic_dlq": f"test.dlq.{tag}", **changes}
    live = settings.model_copy(update=update)
    ensure_topics(live)
    try:
        yield live
    finally:
        delete_topics(live, client_id="klinestream-tests")


def read_topic(settings: Settings, topic: str) -> list[Consumed]:
    """Every record of partition 0 of ``topic``, from the beginning to the current end."""
    from kafka import KafkaConsumer, TopicPartition

    from adapters.kafka import client_config
    from models.credentials import KafkaPrincipal

    consumer = KafkaConsumer(
        **client_config(settings, KafkaPrincipal.WRITER, enable_auto_commit=False, consumer_timeout_ms=5000)
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


class IngestorThread:
    """``run_ingestor`` on its own event loop in a thread, stoppable from the test."""

    def __init__(self, settings: Settings) -> None:
        from streaming.ingestor import run_ingestor

        self.settings = settings
        self.result: Ingestor | None = None
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._run = run_ingestor
        self._thread = threading.Thread(target=self._main, name="ingestor", daemon=True)

    def _main(self) -> None:
        try:
            self.result = self._loop.run_until_complete(self._run(self.settings, self._stop, 5, idle_seconds=2.0))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self._loop.close()

    def __enter__(self) -> IngestorThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the ingestor did not stop"


def signature_headers(settings: Settings, key: bytes | None, value: bytes) -> list[tuple[str, bytes]] | None:
    """The headers that sign a ``klines.1h`` record when ``settings`` has a signing key (None otherwise)."""
    signer = settings.kline_signer()
    return signer.headers(key, value) if signer is not None else None


def seed(settings: Settings, klines: list[Kline]) -> None:
    """What an earlier ingestor run left in ``klines.1h``."""
    from adapters.kafka import publish_klines

    publish_klines(settings, klines, "binance-ws", client_id="test-seed")
