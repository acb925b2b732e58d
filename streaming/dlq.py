"""Judging the raw records of ``klines.1h``: a :class:`Kline` to trade on, or a DLQ record with a reason.

The Spark job calls :func:`classify` on the driver inside ``foreachBatch``, so validity is decided by the
same code as everywhere else (:func:`models.kline_record.decode_record`, the strict contract of a record,
and :func:`models.kline.check_kline`): Spark and Python cannot disagree. Reasons are ``"<code>: <detail>"``
with a stable code from :data:`REASON_CODES` (defined once, in models/kline_record.py) that dashboards and
tests can count on.

Nothing one record holds can stop the stream: :func:`judge` never raises — an unexpected exception while
judging a record (a bug, a resource limit) dead-letters that record as ``unparseable``. A DLQ copy stays
under the broker's size limit whatever the record: its value is cut to :data:`DLQ_VALUE_LIMIT` bytes
(header ``dlq.truncated``), and every copy carries the SHA-256 and size of the original value and the
original key (cut to :data:`DLQ_KEY_LIMIT` bytes) beside the reason and the source coordinates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from adapters.kafka import DlqRecord
from models.kline import Kline
from models.kline_record import REASON_CODES, RecordRejected, decode_record, missing_features, shown
from models.signing import KlineSigner

__all__ = ["REASON_CODES", "AcceptanceRules", "Accepted", "RawRecord", "classify", "judge"]

#: Default ceiling of a ``klines.1h`` value: a kline is ~350 bytes of JSON.
MAX_RECORD_BYTES = 4096
#: The most of a rejected value a DLQ copy keeps (the broker's default record limit is 1 MiB).
DLQ_VALUE_LIMIT = 64 * 1024
DLQ_KEY_LIMIT = 256
DLQ_REASON_LIMIT = 600
DLQ_SHA256 = "dlq.sha256"
DLQ_SIZE = "dlq.size"
DLQ_TRUNCATED = "dlq.truncated"
DLQ_KEY = "dlq.key"
#: The allowed difference between a kline's close time and the clock that bounds it (default of the setting).
DEFAULT_SKEW_MS = 60_000


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A Kafka record as the job receives it (Spark's kafka source columns)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def reject(self, code: str, detail: str) -> DlqRecord:
        """This record as a DLQ record with ``code``, bounded in size whatever the record (module docstring)."""
        if code not in REASON_CODES:
            raise ValueError(f"unknown DLQ reason code {code!r}")
        value = self.value
        original = value or b""
        extra = [(DLQ_SHA256, hashlib.sha256(original).hexdigest().encode()), (DLQ_SIZE, str(len(original)).encode())]
        if len(original) > DLQ_VALUE_LIMIT:
            value = original[:DLQ_VALUE_LIMIT]
            extra.append((DLQ_TRUNCATED, b"true"))
        if self.key is not None:
            extra.append((DLQ_KEY, self.key[:DLQ_KEY_LIMIT]))
        reason = f"{code}: {detail}"[:DLQ_REASON_LIMIT]
        return DlqRecord(self.topic, self.partition, self.offset, self.key, value, reason, tuple(extra))

    @property
    def coordinates(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A record that parsed and validated, with where it came from."""

    record: RawRecord
    kline: Kline


@dataclass(frozen=True)
class AcceptanceRules:
    """What a record must satisfy to be traded (see :func:`judge`)."""

    symbols: frozenset[str]
    max_bytes: int = MAX_RECORD_BYTES
    signer: KlineSigner | None = None
    """Verify each record's signature (None: signing off, every well-formed record is trusted)."""
    required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Optional contract columns each symbol must carry (the traded model's feature spec)."""
    now_ms: int | None = None
    """The wall clock in live mode; None in replays (then only the record's own timestamp bounds its close)."""
    skew_ms: int = DEFAULT_SKEW_MS


def judge(record: RawRecord, rules: AcceptanceRules) -> Accepted | DlqRecord:
    """One record → :class:`Accepted` or a :class:`DlqRecord` naming the first rule it breaks. Never raises."""
    try:
        return _judge(record, rules)
    except Exception as exc:  # one record's bug or resource limit must not stop the stream: that record goes
        return record.reject("unparseable", f"{type(exc).__name__} while judging the record")


def _judge(record: RawRecord, rules: AcceptanceRules) -> Accepted | DlqRecord:
    value = record.value
    if not value:
        return record.reject("empty", "record has no value")
    if len(value) > rules.max_bytes:
        return record.reject("oversized", f"{len(value)} bytes > {rules.max_bytes}")
    if rules.signer is not None:
        why = rules.signer.verify(record.key, value, record.headers)
        if why is not None:
            return record.reject(why, "the record is not signed by the ingestor's key")
    if record.key is None:
        return record.reject("missing_key", "record has no key (the key must be the symbol)")
    try:
        kline = decode_record(value)
    except RecordRejected as exc:
        return record.reject(exc.code, exc.detail)
    if kline.symbol not in rules.symbols:
        return record.reject("unknown_symbol", f"{shown(kline.symbol)} is not one of {sorted(rules.symbols)}")
    if record.key != kline.symbol.encode():
        return record.reject("key_mismatch", f"key {shown(record.key)} is not the symbol {kline.symbol}")
    missing = missing_features(kline, rules.required)
    if missing is not None:
        return record.reject("missing_feature", missing)
    limit = _close_limit(record, rules)
    if limit is not None and kline.event_time > limit:
        return record.reject("future", f"{kline.symbol} {kline.open_time} closes at {kline.event_time} > {limit}")
    return Accepted(record, kline)


def _close_limit(record: RawRecord, rules: AcceptanceRules) -> int | None:
    """The latest close time a record may carry: when it was written (and, live, now), plus the skew. A closed
    kline is published after it closes, so a later close is a kline from the future."""
    bounds = [t for t in (record.timestamp_ms if record.timestamp_ms > 0 else None, rules.now_ms) if t is not None]
    return min(bounds) + rules.skew_ms if bounds else None


def classify(records: Iterable[RawRecord], rules: AcceptanceRules) -> tuple[list[Accepted], list[DlqRecord]]:
    """Split a micro-batch into accepted klines (in offset order) and DLQ records."""
    accepted: list[Accepted] = []
    rejected: list[DlqRecord] = []
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        outcome = judge(record, rules)
        if isinstance(outcome, Accepted):
            accepted.append(outcome)
        else:
            rejected.append(outcome)
    return accepted, rejected
