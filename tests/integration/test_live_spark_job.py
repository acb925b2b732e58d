"""The Spark job on real Kafka and real Spark: hostile records to the DLQ with a reason, good klines to the
trader exactly once and in hour order — across a restart and a replayed (uncommitted) micro-batch."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from models.credentials import KafkaPrincipal
from models.kline import HOUR_MS, Kline
from models.settings import Settings
from tests.integration.live_helpers import live_topics, read_topic, signature_headers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
T0 = 1_672_531_200_000
HOURS = 60
HOSTILE_KINDS = ("not_json", "wrong_type", "invalid_kline", "oversized", "unknown_symbol", "schema_version")


def good_kline(symbol: str, hour: int) -> Kline:
    price = 100.0 + hour + SYMBOLS.index(symbol)
    open_time = T0 + hour * HOUR_MS
    return Kline(symbol, "1h", open_time, price, price + 2, price - 1, price + 1, 5.0, open_time + HOUR_MS - 1)


def hostile(kind: str, i: int) -> tuple[bytes, bytes]:
    """(key, value) of one hostile record of ``kind``."""
    payload = json.loads(good_kline("BTCUSDT", i % HOURS).to_json("hostile"))
    if kind == "not_json":
        return b"BTCUSDT", b"{oops" + str(i).encode()
    if kind == "wrong_type":
        payload["close"] = {"nested": i}
    elif kind == "invalid_kline":
        payload["open"], payload["low"] = -1.0 - i, -2.0 - i
    elif kind == "oversized":
        payload["source"] = "x" * 8000
    elif kind == "unknown_symbol":
        payload["symbol"] = "DOGEUSDT"
        return b"DOGEUSDT", json.dumps(payload).encode()
    elif kind == "schema_version":
        payload["schema_version"] = 7
    return b"BTCUSDT", json.dumps(payload).encode()


class Recorder:
    """Observation point at the trader's interface, with the trader's exactly-once rule (last batch id)."""

    def __init__(self) -> None:
        self.last_batch_id = -1
        self.delivered: list[Kline] = []
        self.batches: list[int] = []
        self.skipped: list[int] = []

    def process_batch(self, batch_id: int, klines: list[Kline], degraded: set[int] | None = None) -> None:
        if batch_id <= self.last_batch_id:
            self.skipped.append(batch_id)
            return
        assert not degraded, f"unexpected degraded hours {degraded}"
        self.delivered.extend(klines)
        self.batches.append(batch_id)
        self.last_batch_id = batch_id


def produce(settings: Settings, hours: range, rng: random.Random, n_hostile: int) -> dict[int, str]:
    """Good klines of ``hours`` (shuffled within 2-hour windows), duplicates and hostile records mixed in.
    Returns the expected DLQ reason code by offset."""
    from adapters.kafka import build_producer

    records: list[tuple[bytes, bytes, str | None]] = []
    for start in range(hours.start, hours.stop, 2):
        window = [good_kline(s, h) for h in range(start, min(start + 2, hours.stop)) for s in SYMBOLS]
        rng.shuffle(window)
        records += [(k.symbol.encode(), k.to_json("test"), None) for k in window]
        k = rng.choice(window)
        records.append((k.symbol.encode(), k.to_json("test-duplicate"), "duplicate"))
    per_slot = n_hostile - len(hours) // 2
    for i in range(per_slot):
        kind = HOSTILE_KINDS[i % len(HOSTILE_KINDS)]
        key, value = hostile(kind, i)
        records.insert(rng.randrange(len(records) + 1), (key, value, kind))
    producer = build_producer(settings, client_id="test-producer", principal=KafkaPrincipal.WRITER)
    try:
        topic = settings.kafka_topic_klines
        futures = [(producer.send(topic, key=k, value=v, headers=signature_headers(settings, k, v)), why)
                   for k, v, why in records]  # fmt: skip
        producer.flush()
        return {f.get(timeout=30).offset: why for f, why in futures if why is not None}
    finally:
        producer.close()


def drain(spark: Any, settings: Settings, trader: Recorder, checkpoint: Path) -> list[Any]:
    """Run the job until the topic is drained; returns each micro-batch's outcome."""
    from streaming.spark_job import StreamOptions, run_stream

    options = StreamOptions(
        name="test-job", available_now=True, max_offsets_per_trigger=250, timeout_hours=2, checkpoint_dir=checkpoint
    )
    outcomes: list[Any] = []
    run_stream(spark, settings, trader, options, on_outcome=outcomes.append)
    return outcomes


def assert_dlq(settings: Settings, expected: dict[int, str]) -> None:
    dlq = read_topic(settings, settings.kafka_topic_dlq)
    by_source: dict[int, str] = {}
    for record in dlq:
        source_offset = int(record.headers["dlq.offset"])
        reason = record.headers["dlq.reason"].decode()
        assert record.key == f"{settings.kafka_topic_klines}/0/{source_offset}".encode()
        assert by_source.setdefault(source_offset, reason) == reason, "a replay wrote a different reason"
    assert {offset: reason.split(":")[0] for offset, reason in by_source.items()} == expected


def test_hostile_records_go_to_the_dlq_and_good_klines_reach_the_trader_once_in_hour_order(
    spark: Any, settings: Settings, stack: Any, tmp_path: Path
) -> None:
    stack.require("kafka", "spark")
    rng = random.Random(6)
    checkpoint = tmp_path / "checkpoint"
    trader = Recorder()
    with live_topics(settings, symbols=SYMBOLS, traded_symbol="BTCUSDT") as live:
        expected = produce(live, range(0, HOURS // 2), rng, 500)
        outcomes = drain(spark, live, trader, checkpoint)
        first_batches = list(trader.batches)
        # a crash after the last batch's foreachBatch but before Spark committed it: Spark replays it
        commits = sorted((checkpoint / "spark" / "commits").glob("[0-9]*"), key=lambda p: int(p.name))
        commits[-1].unlink()
        commits[-1].with_name(f".{commits[-1].name}.crc").unlink(missing_ok=True)
        expected |= produce(live, range(HOURS // 2, HOURS), rng, 500)
        outcomes += drain(spark, live, trader, checkpoint)

        assert trader.skipped == [first_batches[-1]], "the replayed batch must reach the trader's skip"
        assert len(outcomes) > 4 and all(o.schema_disagreements == 0 for o in outcomes)
        assert len(expected) == 1000
        assert_dlq(live, expected)

    hours = [(k.open_time - T0) // HOUR_MS for k in trader.delivered]
    assert hours == sorted(hours), "klines must reach the trader in hour order"
    delivered = Counter((k.symbol, (k.open_time - T0) // HOUR_MS) for k in trader.delivered)
    # the last hours wait for a later traded hour or their peers: everything up to HOURS-1 is complete
    assert delivered == Counter({(s, h): 1 for s in SYMBOLS for h in range(HOURS)})
    assert all(k == good_kline(k.symbol, (k.open_time - T0) // HOUR_MS) for k in trader.delivered)
