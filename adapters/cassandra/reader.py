"""Reading what the traders wrote: the rows of one trader's partitions, and the list of traders.

Used by reports, reconciliation, the dashboard (klinestream/dashboard) and the demo's summary; the
tables are described in :mod:`adapters.cassandra.session`.
"""

from __future__ import annotations

from typing import Any

from adapters.cassandra.session import CassandraSession
from models.records import PositionRecord

READABLE_TABLES = ("decisions", "orders", "positions")
_POSITION_FIELDS = tuple(PositionRecord.__dataclass_fields__)


class TradeReader:
    """Reads the ``decisions``, ``orders`` and ``positions`` tables."""

    def __init__(self, db: CassandraSession) -> None:
        self.db = db

    def read(self, table: str, trader_id: str, symbol: str) -> list[dict[str, Any]]:
        """All rows of a trader's ``decisions``, ``orders`` or ``positions`` partition, in hour order."""
        if table not in READABLE_TABLES:
            raise ValueError(f"cannot read table {table!r}")
        query = f"SELECT * FROM {self.db.keyspace}.{table} WHERE trader_id = %s AND symbol = %s"
        rows = self.db.run(query, (trader_id, symbol), timeout=60)
        return [row._asdict() for row in rows]

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
