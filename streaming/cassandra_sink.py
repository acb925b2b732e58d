"""Cassandra sink of the online trader: decisions, orders, positions, agent checkpoints and controls.

Schema (keyspace ``settings.cassandra_keyspace``, created idempotently by :func:`ensure_schema`;
every write is an upsert under a key derived from the data, so a replayed micro-batch rewrites the
same rows and never adds one):

- ``decisions``  PK ``((trader_id, symbol), open_time, model_version)``: action, Q-values, price,
  epsilon, online updates, degraded/tradable flags, batch id, order id and status, swap info.
- ``orders``     PK ``((trader_id, symbol), open_time, client_order_id)``: the client order id is
  derived from trader, model version, symbol and hour (streaming/records.py); side, quantities,
  prices, status (new → filled | failed, or rejected with a reason), fee, mode, exchange id.
- ``positions``  PK ``((trader_id, symbol), open_time)``: units, cash, equity, buy-and-hold equity,
  realised P&L, fees, the UTC day's starting equity.
- ``agent_checkpoints`` PK ``trader_id``: the *pointer* to the last committed checkpoint (batch id,
  model version, digest, size, chunk count) and the batch in flight.
- ``agent_checkpoint_chunks`` PK ``((trader_id, batch_id), chunk)``: the checkpoint blob in chunks of
  512 KiB (a blob cell of several MB is an anti-pattern and nears the mutation size limit).
- ``controls``   PK ``name``: operator switches; ``kill_switch`` (all traders) and
  ``kill_switch:<trader id>`` stop new orders at once.

Why the checkpoint lives in Cassandra (chunked) rather than in a local file: Cassandra is already the
durable store the trader must reach to commit its rows, so one store holds both, a restarted driver
on another machine (or container) finds its state, and there is no second durability story to
operate. The blob stays small (about 1–3 MB: the replay stores hour indices, not windows; see
streaming/online_learner.py). Commit protocol: the chunks of batch ``n`` are written first under
their own partition, then the single pointer row is updated (atomic per row), then the partition of
the checkpoint before the previous one is deleted; a crash at any point leaves the pointer on a
complete checkpoint, and the digest is checked on load.

Rows are buffered by ``write_*`` and made durable together by :meth:`CassandraSink.flush` (the trader
flushes once per micro-batch, before its checkpoint, and before sending a real order): the rows of one
table share the trader's partition, so they go as single-partition unlogged batches of
``batch_rows`` rows, executed concurrently with the driver's ``execute_concurrent``. Two writes to one
key in one flush are merged first (a batch gives all its mutations one timestamp, so they must not
race).

Temporary failures (no host available, timeouts, unavailable replicas) are retried with exponential
backoff for up to ``max_outage_seconds``: a Cassandra restart delays the batch, loses nothing.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from cassandra import ConsistencyLevel, OperationTimedOut, Unavailable, WriteTimeout
from cassandra import ReadTimeout as CassandraReadTimeout
from cassandra.cluster import Cluster, NoHostAvailable, Session
from cassandra.concurrent import execute_concurrent
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, PreparedStatement
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from models.settings import Settings
from streaming.checkpoint import Checkpoint, InFlight
from streaming.records import DecisionRecord, OrderRecord, PositionRecord

log = logging.getLogger(__name__)

TEMPORARY_ERRORS = (NoHostAvailable, OperationTimedOut, WriteTimeout, CassandraReadTimeout, Unavailable)
CHUNK_BYTES = 512 * 1024
BATCH_ROWS = 16
"""Rows per single-partition batch: about 4 KB, under Cassandra's 5 KiB batch-size warning."""
CONCURRENCY = 16
KILL_SWITCH = "kill_switch"

SCHEMA = (
    "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}",
    "CREATE TABLE IF NOT EXISTS {ks}.decisions (trader_id text, symbol text, open_time bigint, model_version text, "
    "action int, greedy_action int, q_hold double, q_buy double, q_sell double, price double, epsilon double, "
    "explored boolean, online_updates bigint, degraded boolean, tradable boolean, batch_id bigint, "
    "client_order_id text, order_status text, swapped_from text, "
    "PRIMARY KEY ((trader_id, symbol), open_time, model_version))",
    "CREATE TABLE IF NOT EXISTS {ks}.orders (trader_id text, symbol text, open_time bigint, client_order_id text, "
    "model_version text, side text, quantity double, price double, status text, reason text, "
    "filled_quantity double, fill_price double, fee double, mode text, exchange_order_id text, batch_id bigint, "
    "PRIMARY KEY ((trader_id, symbol), open_time, client_order_id))",
    "CREATE TABLE IF NOT EXISTS {ks}.positions (trader_id text, symbol text, open_time bigint, model_version text, "
    "units double, cash double, equity double, buy_hold_equity double, realized_pnl double, fees_paid double, "
    "day_start_equity double, batch_id bigint, PRIMARY KEY ((trader_id, symbol), open_time))",
    "CREATE TABLE IF NOT EXISTS {ks}.agent_checkpoints (trader_id text PRIMARY KEY, batch_id bigint, "
    "previous_batch_id bigint, model_version text, online_updates bigint, digest text, size_bytes bigint, "
    "chunks int, in_flight_batch_id bigint, in_flight_model_version text)",
    "CREATE TABLE IF NOT EXISTS {ks}.agent_checkpoint_chunks (trader_id text, batch_id bigint, chunk int, "
    "data blob, PRIMARY KEY ((trader_id, batch_id), chunk))",
    "CREATE TABLE IF NOT EXISTS {ks}.controls (name text PRIMARY KEY, active boolean, reason text, "
    "updated_at timestamp)",
)
TABLES = ("decisions", "orders", "positions", "agent_checkpoints", "agent_checkpoint_chunks", "controls")

_DECISION_COLUMNS = tuple(DecisionRecord.__dataclass_fields__)
_ORDER_COLUMNS = tuple(OrderRecord.__dataclass_fields__)
_POSITION_COLUMNS = tuple(PositionRecord.__dataclass_fields__)
#: statement name → (columns, how many leading columns are the primary key)
_ROWS = {"decision": (_DECISION_COLUMNS, 4), "order": (_ORDER_COLUMNS, 4), "position": (_POSITION_COLUMNS, 3)}


def _insert(keyspace: str, table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {keyspace}.{table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("cassandra temporarily unavailable attempt=%d error=%s: retrying", state.attempt_number, error)


def retrying(max_outage_seconds: float) -> Retrying:
    """Exponential backoff (0.2 s → 5 s) on temporary Cassandra errors, for up to ``max_outage_seconds``."""
    return Retrying(
        retry=retry_if_exception_type(TEMPORARY_ERRORS),
        wait=wait_exponential(multiplier=0.2, max=5.0),
        stop=stop_after_delay(max_outage_seconds),
        before_sleep=_log_retry,
        reraise=True,
    )


def connect_cluster(settings: Settings, max_outage_seconds: float = 300.0) -> tuple[Cluster, Session]:
    """A cluster that reconnects quickly (0.5 s → 5 s) after an outage, and its session."""
    cluster = Cluster(
        list(settings.cassandra_hosts),
        port=settings.cassandra_port,
        protocol_version=5,
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc="datacenter1"),
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=5.0),
    )
    session = retrying(max_outage_seconds)(cluster.connect)
    return cluster, session


def ensure_schema(session: Session, keyspace: str, max_outage_seconds: float = 300.0) -> None:
    """Create the keyspace and tables if they do not exist (safe to run at every start)."""
    retry = retrying(max_outage_seconds)
    for statement in SCHEMA:
        retry(session.execute, statement.format(ks=keyspace), timeout=60)


class CassandraSink:
    """:class:`~streaming.sink.TradeSink`, :class:`~streaming.checkpoint.CheckpointStore` and
    :class:`~streaming.risk.Controls` on one Cassandra session."""

    def __init__(self, session: Session, keyspace: str, max_outage_seconds: float = 300.0,
                 chunk_bytes: int = CHUNK_BYTES, cluster: Cluster | None = None,
                 batch_rows: int = BATCH_ROWS) -> None:  # fmt: skip
        self.session, self.keyspace, self.chunk_bytes, self.cluster = session, keyspace, chunk_bytes, cluster
        self.batch_rows = batch_rows
        self._retry = retrying(max_outage_seconds)
        self._pointers: dict[str, tuple[int | None, int | None]] = {}
        self._buffer: dict[str, dict[tuple[Any, ...], list[Any]]] = {name: {} for name in _ROWS}
        ks = keyspace
        self._statements: dict[str, PreparedStatement] = {}
        queries = {
            "decision": _insert(ks, "decisions", _DECISION_COLUMNS),
            "order": _insert(ks, "orders", _ORDER_COLUMNS),
            "position": _insert(ks, "positions", _POSITION_COLUMNS),
            "chunk": f"INSERT INTO {ks}.agent_checkpoint_chunks (trader_id, batch_id, chunk, data) VALUES (?, ?, ?, ?)",
            "pointer": f"UPDATE {ks}.agent_checkpoints SET batch_id = ?, previous_batch_id = ?, model_version = ?, "
            "online_updates = ?, digest = ?, size_bytes = ?, chunks = ? WHERE trader_id = ?",
            "in_flight": f"UPDATE {ks}.agent_checkpoints SET in_flight_batch_id = ?, in_flight_model_version = ? "
            "WHERE trader_id = ?",
            "read_pointer": f"SELECT batch_id, previous_batch_id, model_version, online_updates, digest, chunks, "
            f"in_flight_batch_id, in_flight_model_version FROM {ks}.agent_checkpoints WHERE trader_id = ?",
            "read_chunks": f"SELECT chunk, data FROM {ks}.agent_checkpoint_chunks WHERE trader_id = ? AND batch_id = ?",
            "drop_chunks": f"DELETE FROM {ks}.agent_checkpoint_chunks WHERE trader_id = ? AND batch_id = ?",
            "read_controls": f"SELECT name, active FROM {ks}.controls WHERE name IN ?",
            "set_control": f"INSERT INTO {ks}.controls (name, active, reason, updated_at) "
            "VALUES (?, ?, ?, toTimestamp(now()))",
        }
        for name, query in queries.items():
            statement = self._retry(session.prepare, query)
            statement.consistency_level = ConsistencyLevel.LOCAL_QUORUM
            statement.is_idempotent = name != "set_control"
            self._statements[name] = statement

    @classmethod
    def connect(cls, settings: Settings, max_outage_seconds: float = 300.0) -> CassandraSink:
        """Connect, create the schema if needed, prepare the statements."""
        cluster, session = connect_cluster(settings, max_outage_seconds)
        ensure_schema(session, settings.cassandra_keyspace, max_outage_seconds)
        log.info("cassandra sink ready keyspace=%s hosts=%s", settings.cassandra_keyspace, settings.cassandra_hosts)
        return cls(session, settings.cassandra_keyspace, max_outage_seconds, cluster=cluster)

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.shutdown()

    def _run(self, name: str, params: tuple[Any, ...] | list[Any]) -> Any:
        return self._retry(self.session.execute, self._statements[name], params, timeout=20)

    def _run_all(self, statements: list[tuple[Any, Any]]) -> None:
        """Execute ``(statement, params)`` pairs concurrently; retry each failure with the outage policy."""
        results = execute_concurrent(self.session, statements, concurrency=CONCURRENCY, raise_on_first_error=False)
        for (statement, params), (ok, outcome) in zip(statements, results, strict=True):
            if not ok:
                if not isinstance(outcome, TEMPORARY_ERRORS):
                    raise outcome
                self._retry(self.session.execute, statement, params, timeout=20)

    # --- TradeSink ------------------------------------------------------------------------------
    def _buffer_row(self, name: str, record: object) -> None:
        columns, key_length = _ROWS[name]
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
            self._run_all(statements)
        for rows in self._buffer.values():
            rows.clear()

    # --- CheckpointStore ------------------------------------------------------------------------
    def _pointer_ids(self, trader_id: str) -> tuple[int | None, int | None]:
        if trader_id not in self._pointers:
            row = self._run("read_pointer", (trader_id,)).one()
            self._pointers[trader_id] = (None, None) if row is None else (row.batch_id, row.previous_batch_id)
        return self._pointers[trader_id]

    def save_checkpoint(self, trader_id: str, checkpoint: Checkpoint) -> None:
        """Chunks first, then the pointer row (the commit), then drop what is older than the last two."""
        current, previous = self._pointer_ids(trader_id)
        blob, size = checkpoint.blob, self.chunk_bytes
        chunks = [blob[i : i + size] for i in range(0, len(blob), size)] or [b""]
        chunk = self._statements["chunk"]
        self._run_all([(chunk, (trader_id, checkpoint.batch_id, n, data)) for n, data in enumerate(chunks)])
        keep = previous if current == checkpoint.batch_id else current
        self._run("pointer", (checkpoint.batch_id, keep, checkpoint.model_version, checkpoint.online_updates,
                              checkpoint.digest, len(blob), len(chunks), trader_id))  # fmt: skip
        for stale in {current, previous} - {checkpoint.batch_id, keep, None}:
            self._run("drop_chunks", (trader_id, stale))
        self._pointers[trader_id] = (checkpoint.batch_id, keep)

    def load_checkpoint(self, trader_id: str) -> Checkpoint | None:
        row = self._run("read_pointer", (trader_id,)).one()
        if row is None or row.batch_id is None:
            return None
        parts = sorted(self._run("read_chunks", (trader_id, row.batch_id)), key=lambda r: r.chunk)
        if len(parts) != row.chunks or [p.chunk for p in parts] != list(range(row.chunks)):
            raise ValueError(f"checkpoint {row.batch_id} of trader {trader_id} has {len(parts)}/{row.chunks} chunks")
        blob = b"".join(bytes(p.data or b"") for p in parts)
        if hashlib.sha256(blob).hexdigest() != row.digest:
            raise ValueError(f"checkpoint {row.batch_id} of trader {trader_id} is corrupt: digest mismatch")
        self._pointers[trader_id] = (row.batch_id, row.previous_batch_id)
        return Checkpoint(int(row.batch_id), str(row.model_version), int(row.online_updates or 0), blob)

    def in_flight(self, trader_id: str) -> InFlight | None:
        row = self._run("read_pointer", (trader_id,)).one()
        if row is None or row.in_flight_batch_id is None:
            return None
        return InFlight(int(row.in_flight_batch_id), str(row.in_flight_model_version))

    def mark_in_flight(self, trader_id: str, batch_id: int, model_version: str) -> None:
        self._run("in_flight", (batch_id, model_version, trader_id))

    # --- Controls -------------------------------------------------------------------------------
    def kill_switch_active(self, trader_id: str | None = None) -> bool:
        names = [KILL_SWITCH] + ([f"{KILL_SWITCH}:{trader_id}"] if trader_id else [])
        return any(row.active for row in self._run("read_controls", (names,)))

    def set_kill_switch(self, active: bool, reason: str, trader_id: str | None = None) -> None:
        """Turn the kill switch on or off for all traders (or one): traders see it within a second."""
        name = KILL_SWITCH if trader_id is None else f"{KILL_SWITCH}:{trader_id}"
        self._run("set_control", (name, active, reason))
        log.warning("kill switch name=%s active=%s reason=%s", name, active, reason)

    def controls_for(self, trader_id: str) -> TraderControls:
        return TraderControls(self, trader_id)

    # --- reading (reports, reconciliation) ------------------------------------------------------
    def read(self, table: str, trader_id: str, symbol: str) -> list[dict[str, Any]]:
        """All rows of a trader's ``decisions``, ``orders`` or ``positions`` partition, in hour order."""
        if table not in ("decisions", "orders", "positions"):
            raise ValueError(f"cannot read table {table!r}")
        query = f"SELECT * FROM {self.keyspace}.{table} WHERE trader_id = %s AND symbol = %s"
        rows = self._retry(self.session.execute, query, (trader_id, symbol), timeout=60)
        return [row._asdict() for row in rows]


class TraderControls:
    """The kill switch of one trader (global or its own row), as :class:`~streaming.risk.Controls`."""

    def __init__(self, sink: CassandraSink, trader_id: str) -> None:
        self.sink, self.trader_id = sink, trader_id

    def kill_switch_active(self) -> bool:
        return self.sink.kill_switch_active(self.trader_id)


def _values(record: object, columns: tuple[str, ...]) -> list[Any]:
    """Bind values of a record; an absent value (None) is left unset, so no tombstone is written for it.

    Rows are upserts under deterministic keys and a replayed batch rebinds the same values, so leaving a
    column unset never keeps a stale value that a replay would have cleared."""
    values = [getattr(record, name) for name in columns]  # flat records: no dataclasses.asdict deep copy
    return [UNSET_VALUE if value is None else value for value in values]
