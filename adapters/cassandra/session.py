"""The Cassandra connection of the live path: schema, retries and the session the role classes share.

Schema (keyspace ``settings.cassandra_keyspace``, created idempotently by :func:`ensure_schema`;
every write is an upsert under a key derived from the data, so a replayed micro-batch rewrites the
same rows and never adds one):

- ``decisions``  PK ``((trader_id, symbol), open_time, model_version)``: action, Q-values, price,
  epsilon, online updates, degraded/tradable flags, batch id, order id, status and reason (``not_executable``
  with ``no_position`` / ``no_room`` when the action could not be an order), swap info.
- ``orders``     PK ``((trader_id, symbol), open_time, client_order_id)``: the client order id is
  derived from trader, model version, symbol and hour (models/records.py); side, quantities,
  prices, status (new → filled | failed, or rejected with a reason), fee, mode, exchange id.
- ``positions``  PK ``((trader_id, symbol), open_time)``: units, cash, equity, buy-and-hold equity,
  realised P&L, fees, the UTC day's starting equity.
- ``agent_checkpoints`` PK ``trader_id``: the *pointer* to the last committed checkpoint (batch id,
  model version, digest, size, chunk count) and the batch in flight.
- ``agent_checkpoint_chunks`` PK ``((trader_id, batch_id), chunk)``: the checkpoint blob in chunks.
- ``controls``   PK ``name``: operator switches (the kill switch).

Each connection logs in as the Cassandra role of its process (models/credentials.py: the stream, the
dashboard, the operator's CLI, or the admin). The admin path (:mod:`.provision`, run by ``klinestream stack
up``) creates the schema and grants the roles their tables; :func:`ensure_schema` creates only what is
missing, so a role without schema permissions connects to a provisioned keyspace without touching DDL.

One role per class, all on one :class:`CassandraSession`: the trade sink (:mod:`.trade_sink`: decisions,
orders, positions), the checkpoint store (:mod:`.checkpoints`), the controls (:mod:`.controls`) and the
reader of reports and the dashboard (:mod:`.reader`).

Temporary failures (no host available, timeouts, unavailable replicas) are retried with exponential
backoff for up to ``max_outage_seconds``: a Cassandra restart delays the batch, loses nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from cassandra import ConsistencyLevel, OperationTimedOut, Unauthorized, Unavailable, WriteTimeout
from cassandra import ReadTimeout as CassandraReadTimeout
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable, Session
from cassandra.concurrent import execute_concurrent
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy
from cassandra.query import PreparedStatement
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from models.credentials import CassandraRole
from models.errors import ServiceError
from models.settings import Settings

log = logging.getLogger(__name__)

TEMPORARY_ERRORS = (NoHostAvailable, OperationTimedOut, WriteTimeout, CassandraReadTimeout, Unavailable)
CONCURRENCY = 16

SCHEMA = (
    "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}",
    "CREATE TABLE IF NOT EXISTS {ks}.decisions (trader_id text, symbol text, open_time bigint, model_version text, "
    "action int, greedy_action int, q_hold double, q_buy double, q_sell double, price double, epsilon double, "
    "explored boolean, online_updates bigint, degraded boolean, tradable boolean, batch_id bigint, "
    "client_order_id text, order_status text, swapped_from text, order_reason text, "
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
#: Columns added after a table was first released: (table, column, type), added to an older keyspace at start.
ADDED_COLUMNS = (("decisions", "order_reason", "text"),)


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


def auth_provider(settings: Settings, role: CassandraRole) -> PlainTextAuthProvider | None:
    """The login of ``role`` (None when Cassandra has no passwords in the settings: no authentication)."""
    credentials = settings.cassandra_credentials(role)
    if credentials is None:
        return None
    return PlainTextAuthProvider(username=credentials.username, password=credentials.secret())


def connect_cluster(
    settings: Settings, role: CassandraRole, max_outage_seconds: float = 300.0
) -> tuple[Cluster, Session]:
    """A cluster logged in as ``role`` that reconnects quickly (0.5 s → 5 s) after an outage, and its session."""
    cluster = Cluster(
        list(settings.cassandra_hosts),
        port=settings.cassandra_port,
        protocol_version=5,
        auth_provider=auth_provider(settings, role),
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc="datacenter1"),
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=5.0),
    )
    session = retrying(max_outage_seconds)(cluster.connect)
    return cluster, session


def existing_tables(session: Session, keyspace: str, max_outage_seconds: float = 300.0) -> set[str] | None:
    """The tables of ``keyspace`` (None when the keyspace does not exist); ``system_schema`` is readable by
    every role."""
    retry = retrying(max_outage_seconds)
    query = "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s"
    if retry(session.execute, query, (keyspace,), timeout=30).one() is None:
        return None
    query = "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s"
    return {row.table_name for row in retry(session.execute, query, (keyspace,), timeout=30)}


def _missing_columns(session: Session, keyspace: str, retry: Any) -> list[tuple[str, str, str]]:
    """The :data:`ADDED_COLUMNS` an older keyspace lacks."""
    query = "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s"
    missing = []
    for table, column, kind in ADDED_COLUMNS:
        present = {row.column_name for row in retry(session.execute, query, (keyspace, table), timeout=30)}
        if column not in present:
            missing.append((table, column, kind))
    return missing


def ensure_schema(session: Session, keyspace: str, max_outage_seconds: float = 300.0) -> list[str]:
    """Create the keyspace and the tables that do not exist, and add the :data:`ADDED_COLUMNS` an older keyspace
    lacks (safe at every start); returns what it created or added.

    Only missing objects are created: Cassandra checks the CREATE permission even for ``IF NOT EXISTS``,
    and the stream's and dashboard's roles have none. A role that lacks it on a keyspace that is not
    provisioned gets a ServiceError saying so."""
    retry = retrying(max_outage_seconds)
    tables = existing_tables(session, keyspace, max_outage_seconds)
    wanted = [("keyspace", SCHEMA[0].format(ks=keyspace))] if tables is None else []
    wanted += [(table, statement.format(ks=keyspace)) for table, statement in zip(TABLES, SCHEMA[1:], strict=True)
               if tables is None or table not in tables]  # fmt: skip
    for name, statement in wanted:
        _execute_ddl(session, retry, keyspace, name, statement)
    added = []
    for table, column, kind in _missing_columns(session, keyspace, retry):
        _execute_ddl(
            session, retry, keyspace, f"{table}.{column}", f"ALTER TABLE {keyspace}.{table} ADD {column} {kind}"
        )
        log.info("cassandra column added keyspace=%s table=%s column=%s", keyspace, table, column)
        added.append(f"{table}.{column}")
    return [name for name, _ in wanted] + added


def _execute_ddl(session: Session, retry: Any, keyspace: str, name: str, statement: str) -> None:
    try:
        retry(session.execute, statement, timeout=60)
    except Unauthorized as exc:
        raise ServiceError(
            f"cassandra keyspace {keyspace} lacks its {name} and this role may not create it "
            f"({exc.args[0] if exc.args else exc}): `klinestream stack up` provisions the schema"
        ) from None


class CassandraSession:
    """One driver session on the keyspace, shared by the role classes: prepares their statements
    (``LOCAL_QUORUM``) and runs them under the outage retry policy."""

    def __init__(self, session: Session, keyspace: str, max_outage_seconds: float = 300.0,
                 cluster: Cluster | None = None) -> None:  # fmt: skip
        self.session, self.keyspace, self.cluster = session, keyspace, cluster
        self.retry = retrying(max_outage_seconds)

    @classmethod
    def connect(cls, settings: Settings, role: CassandraRole, max_outage_seconds: float = 300.0) -> CassandraSession:
        """Connect as ``role`` and create what is missing of the schema (if the role may)."""
        cluster, session = connect_cluster(settings, role, max_outage_seconds)
        try:
            ensure_schema(session, settings.cassandra_keyspace, max_outage_seconds)
        except ServiceError:
            cluster.shutdown()
            raise
        log.info("cassandra ready keyspace=%s hosts=%s role=%s", settings.cassandra_keyspace,
                 settings.cassandra_hosts, role.value)  # fmt: skip
        return cls(session, settings.cassandra_keyspace, max_outage_seconds, cluster=cluster)

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.shutdown()

    def ping(self, timeout: float = 2.0) -> None:
        """Raise unless Cassandra answers a query now (no retry: for readiness checks)."""
        self.session.execute("SELECT release_version FROM system.local", timeout=timeout)

    def prepare(self, query: str, idempotent: bool = True) -> PreparedStatement:
        """A prepared statement at ``LOCAL_QUORUM``; ``idempotent`` lets the driver retry it safely."""
        statement = self.retry(self.session.prepare, query)
        statement.consistency_level = ConsistencyLevel.LOCAL_QUORUM
        statement.is_idempotent = idempotent
        return statement

    def run(self, statement: Any, params: tuple[Any, ...] | list[Any], timeout: float = 20) -> Any:
        """Execute one statement, retrying temporary failures."""
        return self.retry(self.session.execute, statement, params, timeout=timeout)

    def run_all(self, statements: list[tuple[Any, Any]]) -> None:
        """Execute ``(statement, params)`` pairs concurrently; retry each failure with the outage policy."""
        results = execute_concurrent(self.session, statements, concurrency=CONCURRENCY, raise_on_first_error=False)
        for (statement, params), (ok, outcome) in zip(statements, results, strict=True):
            if not ok:
                if not isinstance(outcome, TEMPORARY_ERRORS):
                    raise outcome
                self.retry(self.session.execute, statement, params, timeout=20)
