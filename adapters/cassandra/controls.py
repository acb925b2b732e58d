"""Operator controls in Cassandra's ``controls`` table: the kill switch, for every trader or one.

Rows ``kill_switch`` (all traders) and ``kill_switch:<trader id>`` (one trader); a trader reads them
through :class:`TraderControls` (a :class:`~models.ports.Controls`) and stops new orders at once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from adapters.cassandra.session import CassandraSession

log = logging.getLogger(__name__)

KILL_SWITCH_CONTROL = "kill_switch"
"""Name of the kill switch's row (``kill_switch:<trader id>`` for one trader); the risk check's reason
for a refused order is ``streaming.risk.KILL_SWITCH``."""


def _control_name(trader_id: str | None) -> str:
    return KILL_SWITCH_CONTROL if trader_id is None else f"{KILL_SWITCH_CONTROL}:{trader_id}"


class CassandraControls:
    """Read and set the kill switch (global, or of one trader)."""

    def __init__(self, db: CassandraSession) -> None:
        self.db = db
        ks = db.keyspace
        self._read = db.prepare(f"SELECT name, active FROM {ks}.controls WHERE name IN ?")
        self._status = db.prepare(f"SELECT name, active, reason, updated_at FROM {ks}.controls WHERE name IN ?")
        self._set = db.prepare(
            f"INSERT INTO {ks}.controls (name, active, reason, updated_at) VALUES (?, ?, ?, toTimestamp(now()))",
            idempotent=False,
        )

    def kill_switch_active(self, trader_id: str | None = None) -> bool:
        """The global switch, or (with ``trader_id``) the global one or that trader's own."""
        names = [KILL_SWITCH_CONTROL] + ([_control_name(trader_id)] if trader_id else [])
        return any(row.active for row in self.db.run(self._read, (names,)))

    def set_kill_switch(self, active: bool, reason: str, trader_id: str | None = None) -> None:
        """Turn the kill switch on or off for all traders (or one): traders see it within a second."""
        name = _control_name(trader_id)
        self.db.run(self._set, (name, active, reason))
        log.warning("kill switch name=%s active=%s reason=%s", name, active, reason)

    def kill_switch_status(self, trader_id: str | None = None) -> tuple[bool, str | None, int | None]:
        """(active, reason, updated_at in epoch ms) of the switch that applies to ``trader_id`` (the global
        row or the trader's own): the newest active row, else the newest row; (False, None, None) with none."""
        names = [KILL_SWITCH_CONTROL] + ([_control_name(trader_id)] if trader_id else [])
        rows = list(self.db.session.execute(self._status, (names,), timeout=5))  # no retry: a monitor's poll
        if not rows:
            return False, None, None
        rows.sort(key=lambda r: (bool(r.active), r.updated_at or datetime.min))
        newest = rows[-1]
        at = int(newest.updated_at.replace(tzinfo=UTC).timestamp() * 1000) if newest.updated_at else None
        return bool(newest.active), newest.reason, at

    def for_trader(self, trader_id: str) -> TraderControls:
        return TraderControls(self, trader_id)


class TraderControls:
    """The kill switch of one trader (global or its own row), as :class:`~models.ports.Controls`."""

    def __init__(self, controls: CassandraControls, trader_id: str) -> None:
        self.controls, self.trader_id = controls, trader_id

    def kill_switch_active(self) -> bool:
        return self.controls.kill_switch_active(self.trader_id)
