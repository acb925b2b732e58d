"""The bot's reads and its one write, on Cassandra (trades, the kill switch) and the MLflow registry (aliases).

Bounded reads only: per trader, the newest decision and position, the orders of the current UTC day, the
positions of the last ``days`` days.
"""

from __future__ import annotations

import time

from adapters.cassandra.controls import CassandraControls
from adapters.cassandra.reader import TradeReader
from adapters.cassandra.session import CassandraSession
from klinestream.bot import views
from models.config import DEFAULT_CAPITAL
from models.settings import Settings

DAY_MS = views.DAY_MS
#: Bound of every range read (a week of hourly positions, or a day's orders, fit many times over).
MAX_ROWS = 10_000


class OpsBackend:
    """:class:`klinestream.bot.app.BotBackend` on the services of ``settings``."""

    def __init__(self, settings: Settings, db: CassandraSession, days: int = 7, capital: float = DEFAULT_CAPITAL):
        self.settings, self.db, self.days, self.capital = settings, db, days, capital
        self.reader, self.controls = TradeReader(db), CassandraControls(db)

    def _views(self, with_days: bool = False) -> list[views.TraderView]:
        today = int(time.time() * 1000) // DAY_MS * DAY_MS
        out = []
        for trader_id, symbol in self.reader.traders():
            decision = self.reader.read_hours("decisions", trader_id, symbol, limit=1, newest_first=True)
            position = self.reader.read_hours("positions", trader_id, symbol, limit=1, newest_first=True)
            positions = (
                self.reader.read_hours("positions", trader_id, symbol, start=today - self.days * DAY_MS, limit=MAX_ROWS)
                if with_days
                else []
            )
            orders = self.reader.read_hours("orders", trader_id, symbol, start=today, limit=MAX_ROWS)
            out.append(views.TraderView(
                trader_id, symbol, decision[0] if decision else None, position[0] if position else None,
                self.controls.kill_switch_active(trader_id) or self.settings.kill_switch, orders, positions,
            ))  # fmt: skip
        return out

    def status(self) -> str:
        return views.status_text(self._views())

    def profit(self) -> str:
        return views.profit_text(self._views(), self.capital)

    def daily(self) -> str:
        return views.daily_text(self._views(with_days=True))

    def champion(self) -> str:
        from adapters.mlflow.registry import registry_client

        client = registry_client(self.settings.mlflow_tracking_uri)
        name = self.settings.mlflow_model_name
        aliases: dict[str, int | None] = {}
        gate: dict[str, str] = {}
        for alias in ("champion", "challenger", "previous"):
            try:
                version = client.get_model_version_by_alias(name, alias)
            except Exception:  # alias unset (or model missing): shown as "-"
                aliases[alias] = None
                continue
            aliases[alias] = int(version.version)
            if alias == "champion":
                gate = {k: str(v) for k, v in (version.tags or {}).items() if k.startswith("gate.")}
        return views.champion_text(name, aliases, gate)

    def set_kill_switch(self, active: bool, reason: str) -> None:
        self.controls.set_kill_switch(active, reason)
