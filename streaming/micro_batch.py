"""What the Spark job does with one micro-batch, on the driver, in plain Python (no pyspark here).

``process(batch_id, records)``:

1. judge every raw record (:mod:`streaming.dlq`) — bad ones are DLQ records with a reason;
2. feed the good klines, in offset order, to the hour aligner restored from the state the previous
   batch left (:mod:`streaming.batch_state`); duplicates, late and out-of-range klines become DLQ
   records too;
3. write the DLQ records (deterministic keys) and wait until Kafka has them;
4. hand the klines of the released hours, in hour order, to the trader's
   ``process_batch(batch_id, klines, degraded)`` (the trader skips a batch id it has already processed);
5. save the aligner state under ``batch_id``.

Exactly-once: Spark logs the batch's offsets before and commits after ``foreachBatch``; a crash in
between replays the same offsets under the same batch id, which reads the same previous state and
therefore releases the same hours; the trader's checkpointed last batch id and Cassandra's upserts under
deterministic keys make the second delivery a no-op. DLQ writes are at-least-once with the same keys.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from adapters.kafka import DlqRecord
from models.kline import Kline
from streaming.aligner import AlignedHour, HourAligner
from streaming.batch_state import BatchStateStore
from streaming.dlq import MAX_RECORD_BYTES, Accepted, RawRecord, classify

log = logging.getLogger(__name__)


class BatchTrader(Protocol):
    """The online trader as the job sees it (``streaming.online_trader.OnlineTrader``)."""

    def process_batch(self, batch_id: int, klines: list[Kline], degraded: set[int] | None = None) -> Any:
        """Decide the hours of ``klines``; ``degraded`` = open_times to decide although incomplete."""
        ...


class DlqWriter(Protocol):
    def write(self, records: Sequence[DlqRecord]) -> int:
        """Make ``records`` durable in the DLQ topic; returns how many were written."""
        ...


@dataclass(frozen=True)
class AlignerConfig:
    symbols: tuple[str, ...]
    traded_symbol: str
    timeout_hours: int = 2
    """Decide hour t degraded once the traded symbol has hour t + timeout_hours (event time)."""
    max_record_bytes: int = MAX_RECORD_BYTES


@dataclass
class BatchOutcome:
    """What one micro-batch did (logged, returned for tests)."""

    batch_id: int
    records: int
    accepted: int
    dlq: list[DlqRecord] = field(default_factory=list)
    hours: list[AlignedHour] = field(default_factory=list)
    trader_result: Any = None
    schema_disagreements: int = 0
    """Records Python accepted but Spark's parse read differently (set by the Spark job)."""
    accepted_items: list[Accepted] = field(default_factory=list, repr=False)
    """The accepted records with their parsed klines (the aligner may still have sent some to the DLQ)."""

    @property
    def degraded_hours(self) -> list[int]:
        return [h.open_time for h in self.hours if h.degraded]


class MicroBatchProcessor:
    """Judge → align → DLQ → trader → save state, for one micro-batch at a time."""

    def __init__(self, config: AlignerConfig, trader: BatchTrader, dlq: DlqWriter, state: BatchStateStore) -> None:
        self.config = config
        self.trader = trader
        self.dlq = dlq
        self.state = state

    def new_aligner(self) -> HourAligner:
        return HourAligner(self.config.symbols, self.config.traded_symbol, self.config.timeout_hours)

    def process(self, batch_id: int, records: Iterable[RawRecord]) -> BatchOutcome:
        records = list(records)
        aligner = self.new_aligner()
        previous = self.state.load_before(batch_id)
        if previous is not None:
            aligner.restore(previous)
        accepted, rejected = classify(records, self.config.symbols, self.config.max_record_bytes)
        for item in accepted:
            why = aligner.add(item.kline)
            if why is not None:
                rejected.append(item.record.reject(*why))
        hours = aligner.release()
        rejected.sort(key=lambda r: (r.topic, r.partition, r.offset))
        if rejected:
            self.dlq.write(rejected)
        outcome = BatchOutcome(batch_id, len(records), len(accepted), rejected, hours, accepted_items=accepted)
        if hours:
            klines = [kline for hour in hours for kline in hour.klines]
            outcome.trader_result = self.trader.process_batch(batch_id, klines, set(outcome.degraded_hours))
        self.state.save(batch_id, aligner.state())
        log.info(
            "micro-batch batch_id=%d records=%d accepted=%d dlq=%d hours=%d degraded=%d first_hour=%s last_hour=%s",
            batch_id,
            len(records),
            len(accepted),
            len(rejected),
            len(hours),
            len(outcome.degraded_hours),
            hours[0].open_time if hours else None,
            hours[-1].open_time if hours else None,
        )
        return outcome
