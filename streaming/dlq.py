"""Judging the raw records of ``klines.1h``: a :class:`Kline` to trade on, or a DLQ record with a reason.

The Spark job calls :func:`classify` on the driver inside ``foreachBatch``, so validity is decided by the
same code as everywhere else (:func:`models.kline.parse_record` and :func:`models.kline.check_kline`):
Spark and Python cannot disagree. Reasons are ``"<code>: <detail>"`` with a stable code (one of
:data:`REASON_CODES`) that dashboards and tests can count on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from adapters.kafka import DlqRecord
from models.errors import KlineParseError
from models.kline import INTERVAL_MS, Kline, check_kline, parse_record

#: Default ceiling of a ``klines.1h`` value: a kline is ~350 bytes of JSON.
MAX_RECORD_BYTES = 4096

REASON_CODES = (
    "empty",
    "oversized",
    "not_json",
    "not_object",
    "schema_version",
    "missing_field",
    "wrong_type",
    "invalid_kline",
    "unknown_symbol",
    "unknown_interval",
    "key_mismatch",
    "duplicate",
    "late",
    "out_of_range",
)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A Kafka record as the job receives it (Spark's kafka source columns)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0

    def reject(self, code: str, detail: str) -> DlqRecord:
        if code not in REASON_CODES:
            raise ValueError(f"unknown DLQ reason code {code!r}")
        return DlqRecord(self.topic, self.partition, self.offset, self.key, self.value, f"{code}: {detail}")


@dataclass(frozen=True, slots=True)
class Accepted:
    """A record that parsed and validated, with where it came from."""

    record: RawRecord
    kline: Kline


def parse_error_code(error: KlineParseError) -> str:
    """The reason code of a :func:`parse_record` failure (its messages name the failed rule)."""
    message = str(error)
    if message.startswith("not JSON"):
        return "not_json"
    if message.startswith("record is not a JSON object"):
        return "not_object"
    if message.startswith("schema_version"):
        return "schema_version"
    if message.startswith("record lacks field"):
        return "missing_field"
    return "wrong_type"


def judge(record: RawRecord, symbols: frozenset[str], max_bytes: int = MAX_RECORD_BYTES) -> Accepted | DlqRecord:
    """One record → :class:`Accepted` or a :class:`DlqRecord` naming the first rule it breaks."""
    value = record.value
    if not value:
        return record.reject("empty", "record has no value")
    if len(value) > max_bytes:
        return record.reject("oversized", f"{len(value)} bytes > {max_bytes}")
    try:
        kline = parse_record(value)
    except KlineParseError as exc:
        return record.reject(parse_error_code(exc), str(exc))
    if kline.symbol not in symbols:
        return record.reject("unknown_symbol", f"{kline.symbol!r} is not one of {sorted(symbols)}")
    if kline.interval not in INTERVAL_MS:
        return record.reject("unknown_interval", f"{kline.interval!r} is not one of {sorted(INTERVAL_MS)}")
    problems = check_kline(kline)
    if problems:
        return record.reject("invalid_kline", "; ".join(problems))
    if record.key is not None and record.key != kline.symbol.encode():
        return record.reject("key_mismatch", f"key {record.key[:32]!r} is not the symbol {kline.symbol}")
    return Accepted(record, kline)


def classify(
    records: Iterable[RawRecord], symbols: Iterable[str], max_bytes: int = MAX_RECORD_BYTES
) -> tuple[list[Accepted], list[DlqRecord]]:
    """Split a micro-batch into accepted klines (in offset order) and DLQ records."""
    allowed = frozenset(symbols)
    accepted: list[Accepted] = []
    rejected: list[DlqRecord] = []
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        outcome = judge(record, allowed, max_bytes)
        if isinstance(outcome, Accepted):
            accepted.append(outcome)
        else:
            rejected.append(outcome)
    return accepted, rejected
