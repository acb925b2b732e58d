"""Where the online trader's rows go: :class:`TradeSink` (Cassandra in production)."""

from __future__ import annotations

from typing import Protocol

from streaming.records import DecisionRecord, OrderRecord, PositionRecord


class TradeSink(Protocol):
    """Upserts under deterministic keys: writing the same record twice leaves one row.

    ``write_*`` may buffer; :meth:`flush` returns once every row written before it is durable."""

    def write_decision(self, record: DecisionRecord) -> None: ...

    def write_order(self, record: OrderRecord) -> None: ...

    def write_position(self, record: PositionRecord) -> None: ...

    def flush(self) -> None: ...
