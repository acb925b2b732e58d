"""Reading what the traders wrote: the rows of one trader's partitions, and the list of traders.

Used by reports, reconciliation, the dashboard (klinestream/dashboard) and the demo's summary; the
tables are described in :mod:`adapters.cassandra.session`.
"""

from __future__ import annotations

from typing import Any

from adapters.cassandra.session import CassandraSession

READABLE_TABLES = ("decisions", "orders", "positions")


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

    def traders(self) -> list[tuple[str, str]]:
        """Every ``(trader_id, symbol)`` that has positions, in Cassandra's order."""
        query = f"SELECT DISTINCT trader_id, symbol FROM {self.db.keyspace}.positions"
        return [(str(r.trader_id), str(r.symbol)) for r in self.db.session.execute(query, timeout=30)]

    def latest(self, table: str, trader_id: str, symbol: str, limit: int = 1) -> list[dict[str, Any]]:
        """The newest ``limit`` rows of a trader's partition, newest first (a bounded read)."""
        if table not in READABLE_TABLES:
            raise ValueError(f"cannot read table {table!r}")
        query = (f"SELECT * FROM {self.db.keyspace}.{table} WHERE trader_id = %s AND symbol = %s "
                 "ORDER BY open_time DESC LIMIT %s")  # fmt: skip
        return [row._asdict() for row in self.db.run(query, (trader_id, symbol, int(limit)), timeout=30)]

    def since(self, table: str, trader_id: str, symbol: str, open_time: int) -> list[dict[str, Any]]:
        """The rows of a trader's partition from the hour ``open_time`` on, in hour order (a bounded read)."""
        if table not in READABLE_TABLES:
            raise ValueError(f"cannot read table {table!r}")
        query = f"SELECT * FROM {self.db.keyspace}.{table} WHERE trader_id = %s AND symbol = %s AND open_time >= %s"
        return [row._asdict() for row in self.db.run(query, (trader_id, symbol, int(open_time)), timeout=30)]
