"""The online trader's :class:`~models.ports.TradeSink` on Cassandra: decision, order and position rows.

Rows are buffered by ``write_*`` and made durable together by :meth:`CassandraTradeSink.flush` (the
trader flushes once per micro-batch, before its checkpoint, and before sending a real order): the rows
of one table share the trader's partition, so they go as single-partition unlogged batches of
``batch_rows`` rows, executed concurrently with the driver's ``execute_concurrent``. Two writes to one
key in one flush are merged first (a batch gives all its mutations one timestamp, so they must not
race). The tables are described in :mod:`adapters.cassandra.session`.
"""

from __future__ import annotations

from typing import Any

from cassandra import ConsistencyLevel
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, PreparedStatement

from adapters.cassandra.session import CassandraSession
from models.records import DecisionRecord, OrderRecord, PositionRecord

BATCH_ROWS = 16
"""Rows per single-partition batch: about 4 KB, under Cassandra's 5 KiB batch-size warning."""

_DECISION_COLUMNS = tuple(DecisionRecord.__dataclass_fields__)
_ORDER_COLUMNS = tuple(OrderRecord.__dataclass_fields__)
_POSITION_COLUMNS = tuple(PositionRecord.__dataclass_fields__)
#: statement name → (table, columns, how many leading columns are the primary key)
_ROWS = {
    "decision": ("decisions", _DECISION_COLUMNS, 4),
    "order": ("orders", _ORDER_COLUMNS, 4),
    "position": ("positions", _POSITION_COLUMNS, 3),
}


def _insert(keyspace: str, table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {keyspace}.{table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


class CassandraTradeSink:
    """Buffered upserts of decisions, orders and positions; :meth:`flush` makes them durable."""

    def __init__(self, db: CassandraSession, batch_rows: int = BATCH_ROWS) -> None:
        self.db, self.batch_rows = db, batch_rows
        self._buffer: dict[str, dict[tuple[Any, ...], list[Any]]] = {name: {} for name in _ROWS}
        self._statements: dict[str, PreparedStatement] = {
            name: db.prepare(_insert(db.keyspace, table, columns)) for name, (table, columns, _) in _ROWS.items()
        }

    def _buffer_row(self, name: str, record: object) -> None:
        _, columns, key_length = _ROWS[name]
        values = _values(record, columns)
        rows = self._buffer[name]
        key = tuple(values[:key_length])
        if key in rows:  # a second write to the key in this flush: merge it as a later upsert would apply
            values = [old if new is UNSET_VALUE else new for old, new in zip(rows[key], values, strict=True)]
        rows[key] = values

    def write_decision(self, record: DecisionRecord) -> None:
        self._buffer_row("decision", record)

    def write_order(self, record: OrderRecord) -> None:
        self._buffer_row("order", record)

    def write_position(self, record: PositionRecord) -> None:
        self._buffer_row("position", record)

    @property
    def pending_rows(self) -> int:
        return sum(len(rows) for rows in self._buffer.values())

    def flush(self) -> None:
        """Make every buffered row durable (``LOCAL_QUORUM``); returns when all are acknowledged."""
        statements: list[tuple[Any, Any]] = []
        for name, rows in self._buffer.items():
            prepared, values = self._statements[name], list(rows.values())
            for start in range(0, len(values), self.batch_rows):
                batch = BatchStatement(BatchType.UNLOGGED, consistency_level=ConsistencyLevel.LOCAL_QUORUM)
                batch.is_idempotent = True
                for params in values[start : start + self.batch_rows]:
                    batch.add(prepared, params)
                statements.append((batch, None))
        if statements:
            self.db.run_all(statements)
        for rows in self._buffer.values():
            rows.clear()


def _values(record: object, columns: tuple[str, ...]) -> list[Any]:
    """Bind values of a record; an absent value (None) is left unset, so no tombstone is written for it.

    Rows are upserts under deterministic keys and a replayed batch rebinds the same values, so leaving a
    column unset never keeps a stale value that a replay would have cleared."""
    values = [getattr(record, name) for name in columns]  # flat records: no dataclasses.asdict deep copy
    return [UNSET_VALUE if value is None else value for value in values]
