"""Assembling the live :class:`~streaming.online_trader.OnlineTrader` from settings.

One place decides what a live trader is made of — the broker of the trading mode, Cassandra for
decisions, orders, positions, checkpoints and the kill switch (one connection shared by the Cassandra
adapter's role classes), the risk limits of the settings — so ``klinestream stream`` and ``klinestream
demo`` trade through the same parts. The trader's ``sink.db`` is that connection: close it when done.

:func:`start_trader_group` adds, on the same connection, the shadow challenger (setting
``KLINESTREAM_SHADOW_CHALLENGER``, given a source of the challenger) and the live monitor (setting
``KLINESTREAM_MONITOR_ENABLED``): streaming/trader_group.py.
"""

from __future__ import annotations

from dataclasses import replace

from adapters.cassandra.checkpoints import CassandraCheckpointStore
from adapters.cassandra.controls import CassandraControls
from adapters.cassandra.reader import TradeReader
from adapters.cassandra.session import CassandraSession
from adapters.cassandra.trade_sink import CassandraTradeSink
from models.alerts import AlertSink
from models.credentials import CassandraRole
from models.ports import ChampionRegistry, ModelSource
from models.settings import Settings
from streaming.brokers import make_broker
from streaming.monitor import LiveMonitor, MonitorConfig
from streaming.online_learner import OnlineConfig
from streaming.online_trader import OnlineTrader, TraderConfig
from streaming.risk import RiskLimits
from streaming.shadow import ShadowTrader, shadow_trader_id
from streaming.trader_group import TraderGroup


def _config(settings: Settings, online: bool, trader_id: str | None) -> TraderConfig:
    extra = {} if trader_id is None else {"trader_id": trader_id}
    return TraderConfig.from_settings(settings, online=OnlineConfig(enabled=online), **extra)


def _champion(settings: Settings, source: ModelSource, db: CassandraSession, config: TraderConfig,
              alerts: AlertSink | None) -> OnlineTrader:  # fmt: skip
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
    db = CassandraSession.connect(settings, CassandraRole.STREAM)
    return _champion(settings, source, db, _config(settings, online, trader_id), alerts)


def start_trader_group(
    settings: Settings,
    source: ModelSource,
    challenger: ModelSource | None = None,
    registry: ChampionRegistry | None = None,
    *,
    online: bool = True,
    trader_id: str | None = None,
    alerts: AlertSink | None = None,
) -> TraderGroup:
    """The champion's trader (as :func:`start_live_trader`), the shadow challenger on ``challenger`` (when
    ``settings.shadow_challenger`` and a challenger source are given) and the live monitor (when
    ``settings.monitor_enabled``; it rolls back through ``registry`` when ``settings.monitor_auto_rollback``).
    The shadow learns online when the champion does, with the same fees, slippage and limits."""
    db = CassandraSession.connect(settings, CassandraRole.STREAM)
    config = _config(settings, online, trader_id)
    champion = _champion(settings, source, db, config, alerts)
    checkpoints = CassandraCheckpointStore(db)
    shadow = None
    if settings.shadow_challenger and challenger is not None:
        shadow_config = replace(config, trader_id=shadow_trader_id(config.trader_id))
        shadow = ShadowTrader.start(shadow_config, challenger, CassandraTradeSink(db), checkpoints,
                                    RiskLimits.from_settings(settings), alerts=alerts)  # fmt: skip
    monitor = None
    if settings.monitor_enabled:
        monitor = LiveMonitor.start(MonitorConfig.from_settings(settings), config.trader_id, champion.symbol,
                                    TradeReader(db), checkpoints, registry,
                                    shadow.trader_id if shadow else None, alerts)  # fmt: skip
    return TraderGroup(champion, shadow, monitor)
