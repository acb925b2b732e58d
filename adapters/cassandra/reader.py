"""Reading what the traders wrote: the rows of one trader's partitions, and the list of traders.

Used by reports, reconciliation, the dashboard (klinestream/dashboard) and the demo's summary; the
tables are described in :mod:`adapters.cassandra.session`.

:meth:`TradeReader.read` returns a whole partition (reports, the demo's summary of one replay).
:meth:`TradeReader.read_hours` and :meth:`TradeReader.newest_decision` are the bounded reads of the
dashboard: a range of the clustering key ``open_time`` with a ``LIMIT``, so a page that refreshes every
few seconds reads the rows it does not have yet, never the partition again.
"""

from __future__ import annotations

from typing import Any

from cassandra.query import PreparedStatement

from adapters.cassandra.session import CassandraSession
from models.records import PositionRecord

READABLE_TABLES = ("decisions", "orders", "positions")
_POSITION_FIELDS = tuple(PositionRecord.__dataclass_fields__)


class TradeReader:
    """Reads the ``decisions``, ``orders`` and ``positions`` tables."""

    def __init__(self, db: CassandraSession) -> None:
        self.db = db
        self._prepared: dict[tuple[Any, ...], PreparedStatement] = {}

    def read(self, table: str, trader_id: str, symbol: str) -> list[dict[str, Any]]:
        """All rows of a trader's ``decisions``, ``orders`` or ``positions`` partition, in hour order."""
        _check_table(table)
        query = f"SELECT * FROM {self.db.keyspace}.{table} WHERE trader_id = %s AND symbol = %s"
        rows = self.db.run(query, (trader_id, symbol), timeout=60)
        return [row._asdict() for row in rows]

    def read_hours(
        self,
        table: str,
        trader_id: str,
        symbol: str,
        start: int | None = None,
        end: int | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """At most ``limit`` rows with ``start <= open_time < end`` (either bound may be left out), oldest
        first, or newest first with ``newest_first``: one range query on the clustering key."""
        _check_table(table)
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        bounds = [(op, value) for op, value in ((">=", start), ("<", end)) if value is not None]
        statement = self._statement(table, tuple(op for op, _ in bounds), newest_first)
        params = (trader_id, symbol, *(int(value) for _, value in bounds), int(limit))
        return [row._asdict() for row in self.db.run(statement, params)]

    def newest_decision(self, trader_id: str, symbol: str) -> dict[str, Any] | None:
        """The trader's newest decision with ``written_at_us``, the time its row was written (``WRITETIME``,
        microseconds since the epoch): one row."""
        key = ("newest_decision",)
        if key not in self._prepared:
            self._prepared[key] = self.db.prepare(
                f"SELECT open_time, model_version, action, price, degraded, WRITETIME(action) AS written_at_us "
                f"FROM {self.db.keyspace}.decisions WHERE trader_id = ? AND symbol = ? "
                "ORDER BY open_time DESC LIMIT 1"
            )
        rows = list(self.db.run(self._prepared[key], (trader_id, symbol)))
        return rows[0]._asdict() if rows else None

    def positions_between(self, trader_id: str, symbol: str, start: int | None, end: int) -> list[PositionRecord]:
        """The position rows of a trader from ``start`` (None: its first hour) to ``end``, both included, in hour
        order: a bounded slice of the partition (:class:`models.ports.PositionSource`, for the live monitor)."""
        query = f"SELECT * FROM {self.db.keyspace}.positions WHERE trader_id = %s AND symbol = %s AND open_time <= %s"
        params: tuple[object, ...] = (trader_id, symbol, end)
        if start is not None:
            query, params = query + " AND open_time >= %s", (*params, start)
        rows = self.db.run(query, params, timeout=60)
        return [PositionRecord(**{name: getattr(row, name) for name in _POSITION_FIELDS}) for row in rows]

    def traders(self) -> list[tuple[str, str]]:
        """Every ``(trader_id, symbol)`` that has positions, in Cassandra's order."""
        query = f"SELECT DISTINCT trader_id, symbol FROM {self.db.keyspace}.positions"
        return [(str(r.trader_id), str(r.symbol)) for r in self.db.session.execute(query, timeout=30)]

    def _statement(self, table: str, ops: tuple[str, ...], newest_first: bool) -> PreparedStatement:
        key = (table, ops, newest_first)
        if key not in self._prepared:
            where = "".join(f" AND open_time {op} ?" for op in ops)
            order = " ORDER BY open_time DESC" if newest_first else ""
            self._prepared[key] = self.db.prepare(
                f"SELECT * FROM {self.db.keyspace}.{table} WHERE trader_id = ? AND symbol = ?{where}{order} LIMIT ?"
            )
        return self._prepared[key]


def _check_table(table: str) -> None:
    if table not in READABLE_TABLES:
        raise ValueError(f"cannot read table {table!r}")
