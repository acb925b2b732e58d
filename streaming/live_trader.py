"""Assembling the live :class:`~streaming.online_trader.OnlineTrader` from settings.

One place decides what a live trader is made of — the broker of the trading mode, Cassandra for
decisions, orders, positions, checkpoints and the kill switch (one connection shared by the Cassandra
adapter's role classes), the risk limits of the settings — so ``klinestream stream`` and ``klinestream
demo`` trade through the same parts. The trader's ``sink.db`` is that connection: close it when done.
"""

from __future__ import annotations

from adapters.cassandra.checkpoints import CassandraCheckpointStore
from adapters.cassandra.controls import CassandraControls
from adapters.cassandra.session import CassandraSession
from adapters.cassandra.trade_sink import CassandraTradeSink
from models.alerts import AlertSink
from models.credentials import CassandraRole
from models.ports import ModelSource
from models.settings import Settings
from streaming.brokers import make_broker
from streaming.online_learner import OnlineConfig
from streaming.online_trader import OnlineTrader, TraderConfig
from streaming.risk import RiskLimits


def start_live_trader(
    settings: Settings,
    source: ModelSource,
    *,
    online: bool = True,
    trader_id: str | None = None,
    alerts: AlertSink | None = None,
) -> OnlineTrader:
    """Restore (or start) the trader of ``settings`` on ``source``'s model, trading through the mode's broker.

    ``trader_id`` defaults to ``<mode>-<symbol>`` (see :meth:`TraderConfig.from_settings`); ``alerts`` receives
    its quarantined hours (default: the log).
    """
    extra = {} if trader_id is None else {"trader_id": trader_id}
    config = TraderConfig.from_settings(settings, online=OnlineConfig(enabled=online), **extra)
    db = CassandraSession.connect(settings, CassandraRole.STREAM)
    return OnlineTrader.start(
        config,
        source,
        make_broker(settings),
        CassandraTradeSink(db),
        CassandraCheckpointStore(db),
        RiskLimits.from_settings(settings),
        controls=CassandraControls(db).for_trader(config.trader_id),
        alerts=alerts,
    )
