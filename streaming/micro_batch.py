"""What the Spark job does with one micro-batch, on the driver, in plain Python (no pyspark here).

``process(batch_id, records)``:

1. judge every raw record (:mod:`streaming.dlq`: signature, strict contract, the fields the traded model
   needs, the clock) — bad ones are DLQ records with a reason; judging never raises;
2. feed the good klines, in offset order, to the hour aligner restored from the state the previous
   batch left (:mod:`streaming.batch_state`); duplicates, conflicts, late, out-of-range and before-start
   klines become DLQ records too;
3. write the DLQ records (deterministic keys) and wait until Kafka has them;
4. hand the klines of the released hours, in hour order, to the trader's
   ``process_batch(batch_id, klines, degraded)`` (the trader skips a batch id it has already processed);
5. save the aligner state under ``batch_id``.

Alerts (models/alerts.py): a conflicting duplicate (with both versions), clock outliers (``future``,
``out_of_range``, ``before_start``), a batch set aside, an empty run.

Exactly-once: Spark logs the batch's offsets before and commits after ``foreachBatch``; a crash in
between replays the same offsets under the same batch id, which reads the same previous state and
therefore releases the same hours; the trader's checkpointed last batch id and Cassandra's upserts under
deterministic keys make the second delivery a no-op. DLQ writes are at-least-once with the same keys.

A batch that raises a permanent error (anything but :class:`~models.errors.TemporaryError`, which means
"wait for the service and retry") is counted in :class:`~streaming.batch_state.BatchFailures` and the
error goes up (the job stops; :func:`streaming.spark_job.run_stream_restarting` starts it again from the
checkpoints). After ``max_batch_attempts`` failures of one batch id, the next attempt sets the batch aside:
every record of it goes to the DLQ as ``batch_failed``, an alert lists them, and the stream moves on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from adapters.kafka import DlqRecord
from models.alerts import Alert, AlertSink, LoggingAlertSink, emit
from models.errors import PermanentError, TemporaryError
from models.kline import Kline
from models.signing import KlineSigner
from streaming.aligner import AlignedHour, HourAligner, Rejection
from streaming.batch_state import BatchFailures, BatchStateStore
from streaming.dlq import DEFAULT_SKEW_MS, MAX_RECORD_BYTES, AcceptanceRules, Accepted, RawRecord, classify

log = logging.getLogger(__name__)

#: Rejections that say a kline's time is off the stream's clock.
CLOCK_CODES = frozenset({"future", "out_of_range", "before_start"})
_LISTED = 50


class BatchTrader(Protocol):
    """The online trader as the job sees it (``streaming.online_trader.OnlineTrader``).

    It may also offer ``required_fields() -> {symbol: (column, ...)}``: the optional contract columns its
    model's features need, which the judge then requires of those symbols' klines."""

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
    max_ahead_hours: int = 24
    """A kline further than this past the stream's trusted clock is a clock outlier (``out_of_range``)."""
    start_hour: int | None = None
    """First hour of a new stream (ms); None: where a quorum of symbols first agree (streaming/aligner.py)."""
    signer: KlineSigner | None = None
    skew_ms: int = DEFAULT_SKEW_MS
    live: bool = False
    """Bound close times by the wall clock too (a live stream; replays keep their deterministic clock)."""
    max_batch_attempts: int = 3
    empty_run_records: int = 100
    """Alert when this many records came and none was kept."""


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
    kept: int = 0
    """Klines the aligner kept, less those it later let go (may be negative when it lets earlier ones go)."""
    set_aside: bool = False
    """The batch failed ``max_batch_attempts`` times: its records went to the DLQ as ``batch_failed``."""
    seconds: float = 0.0
    """Wall time of the whole micro-batch on the driver, collect included (set by the Spark job)."""

    @property
    def degraded_hours(self) -> list[int]:
        return [h.open_time for h in self.hours if h.degraded]


@dataclass
class RunTally:
    """Records seen and klines kept since the processor was built (one run of the job)."""

    records: int = 0
    kept: int = 0
    alerted: bool = False

    @property
    def empty(self) -> bool:
        return self.records > 0 and self.kept <= 0


class EmptyRunError(PermanentError):
    """The run saw records and kept none of them."""


class MicroBatchProcessor:
    """Judge → align → DLQ → trader → save state, for one micro-batch at a time."""

    def __init__(self, config: AlignerConfig, trader: BatchTrader, dlq: DlqWriter, state: BatchStateStore,
                 alerts: AlertSink | None = None) -> None:  # fmt: skip
        self.config = config
        self.trader = trader
        self.dlq = dlq
        self.state = state
        self.alerts: AlertSink = alerts if alerts is not None else LoggingAlertSink()
        self.failures = BatchFailures(state.root / "failures.json")
        self.tally = RunTally()

    def new_aligner(self) -> HourAligner:
        c = self.config
        return HourAligner(c.symbols, c.traded_symbol, c.timeout_hours, max_ahead_hours=c.max_ahead_hours,
                           start_hour=c.start_hour)  # fmt: skip

    def rules(self) -> AcceptanceRules:
        """The acceptance rules of this micro-batch (the trader's model decides the required fields)."""
        required: Mapping[str, tuple[str, ...]] = {}
        ask = getattr(self.trader, "required_fields", None)
        if callable(ask):
            required = ask()
        now_ms = int(time.time() * 1000) if self.config.live else None
        return AcceptanceRules(frozenset(self.config.symbols), self.config.max_record_bytes, self.config.signer,
                               required, now_ms, self.config.skew_ms)  # fmt: skip

    def process(self, batch_id: int, records: Iterable[RawRecord]) -> BatchOutcome:
        records = list(records)
        if self.failures.attempts(batch_id) >= self.config.max_batch_attempts:
            outcome = self._set_aside(batch_id, records)
        else:
            try:
                outcome = self._process(batch_id, records)
            except TemporaryError:
                raise  # a service is away: the batch is retried as it is, nothing set aside
            except Exception as exc:
                attempts = self.failures.record(batch_id, exc)
                log.error("micro-batch failed batch_id=%d attempt=%d of %d: %s", batch_id, attempts,
                          self.config.max_batch_attempts, exc)  # fmt: skip
                raise
        self.failures.clear(batch_id)
        self._count(outcome)
        return outcome

    def _process(self, batch_id: int, records: list[RawRecord]) -> BatchOutcome:
        aligner = self.new_aligner()
        previous = self.state.load_before(batch_id)
        if previous is not None:
            aligner.restore(previous)
        accepted, rejected = classify(records, self.rules())
        kept = 0
        for item in accepted:
            why = aligner.add(item.kline, item.record)
            if why is None:
                kept += 1
                continue
            rejected.append(item.record.reject(why.code, why.detail))
            if why.accepted is not None:
                emit(self.alerts, conflict_alert(batch_id, item, why))
        hours = aligner.release()
        for evicted in aligner.take_evicted():
            kept -= 1
            if evicted.held.record is not None:
                rejected.append(evicted.held.record.reject(evicted.rejection.code, evicted.rejection.detail))
            else:  # held in a state written before records were kept: nothing to copy, say so
                held = evicted.held.kline
                log.warning("kline let go without its record symbol=%s open_time=%d reason=%s", held.symbol,
                            held.open_time, evicted.rejection.code)  # fmt: skip
        rejected.sort(key=lambda r: (r.topic, r.partition, r.offset))
        self._alert_clock(batch_id, rejected)
        if rejected:
            self.dlq.write(rejected)
        outcome = BatchOutcome(batch_id, len(records), len(accepted), rejected, hours, accepted_items=accepted,
                               kept=kept)  # fmt: skip
        if hours:
            klines = [kline for hour in hours for kline in hour.klines]
            outcome.trader_result = self.trader.process_batch(batch_id, klines, set(outcome.degraded_hours))
        self.state.save(batch_id, aligner.state())
        _log_outcome(outcome)
        return outcome

    def _set_aside(self, batch_id: int, records: list[RawRecord]) -> BatchOutcome:
        """The batch failed too often: every record to the DLQ, the state carried over, an alert, move on."""
        attempts, error = self.failures.attempts(batch_id), self.failures.last_error(batch_id)
        why = f"micro-batch {batch_id} failed {attempts} times ({error})"
        rejected = [record.reject("batch_failed", why) for record in records]
        if rejected:
            self.dlq.write(rejected)
        previous = self.state.load_before(batch_id)
        self.state.save(batch_id, previous if previous is not None else self.new_aligner().state())
        listed = [r.coordinates for r in records[:_LISTED]]
        emit(self.alerts, Alert("repeated_batch_failure", "error",
                                f"micro-batch {batch_id} failed {attempts} times: its {len(records)} records "
                                "were set aside in the DLQ (batch_failed) and the stream moved on",
                                f"repeated_batch_failure:{batch_id}:{listed[0] if listed else ''}",
                                {"batch_id": batch_id, "attempts": attempts, "error": error,
                                 "records": len(records), "coordinates": listed}))  # fmt: skip
        log.error("micro-batch set aside batch_id=%d attempts=%d records=%d", batch_id, attempts, len(records))
        return BatchOutcome(batch_id, len(records), 0, rejected, set_aside=True)

    def _alert_clock(self, batch_id: int, rejected: list[DlqRecord]) -> None:
        outliers = [r for r in rejected if r.reason.split(":", 1)[0] in CLOCK_CODES]
        if not outliers:
            return
        first = f"{outliers[0].topic}/{outliers[0].partition}/{outliers[0].offset}"
        listed = [{"coordinates": f"{r.topic}/{r.partition}/{r.offset}", "reason": r.reason} for r in outliers]
        message = f"{len(outliers)} kline(s) off the stream's clock dead-lettered in batch {batch_id}"
        details = {"batch_id": batch_id, "count": len(outliers), "records": listed[:_LISTED]}
        emit(self.alerts, Alert("clock_outlier", "warning", message, f"clock_outlier:{first}", details))

    def _count(self, outcome: BatchOutcome) -> None:
        tally = self.tally
        tally.records += outcome.records
        tally.kept += outcome.kept
        if tally.empty and tally.records >= self.config.empty_run_records and not tally.alerted:
            tally.alerted = True
            emit(self.alerts, empty_run_alert(tally, "so far"))

    def finish(self) -> None:
        """End of a run: raise :class:`EmptyRunError` (after an alert) when it kept nothing of what came."""
        if not self.tally.empty:
            return
        emit(self.alerts, empty_run_alert(self.tally, "in this run"))
        raise EmptyRunError(f"the run rejected all {self.tally.records} records it read (see the DLQ and alerts)")


def conflict_alert(batch_id: int, item: Accepted, why: Rejection) -> Alert:
    """The alert of a second, different kline for an accepted (symbol, hour), with both versions."""
    assert why.accepted is not None
    k = item.kline
    return Alert("conflicting_duplicate", "error",
                 f"{k.symbol} {k.open_time}: a second kline with different values at {item.record.coordinates} "
                 "was dead-lettered; the first one accepted stays",
                 f"conflicting_duplicate:{k.symbol}:{k.open_time}:{item.record.coordinates}",
                 {"batch_id": batch_id, "symbol": k.symbol, "open_time": k.open_time,
                  "source": item.record.coordinates, "accepted": why.accepted.to_dict(),
                  "rejected": k.to_dict()})  # fmt: skip


def empty_run_alert(tally: RunTally, when: str) -> Alert:
    return Alert("empty_run", "error", f"{tally.records} records read and none kept {when}: nothing is traded",
                 f"empty_run:{tally.records}", {"records": tally.records, "kept": tally.kept})  # fmt: skip


def _log_outcome(outcome: BatchOutcome) -> None:
    hours = outcome.hours
    log.info(
        "micro-batch batch_id=%d records=%d accepted=%d dlq=%d hours=%d degraded=%d first_hour=%s last_hour=%s",
        outcome.batch_id,
        outcome.records,
        outcome.accepted,
        len(outcome.dlq),
        len(hours),
        len(outcome.degraded_hours),
        hours[0].open_time if hours else None,
        hours[-1].open_time if hours else None,
    )
