"""The exchange simulator: a Binance spot API subset (REST + kline streams) served from kline files or
the lake, with paper fills and fault injection. See :mod:`pipelines.simulator.server`."""

from pipelines.simulator.faults import FaultPlan
from pipelines.simulator.server import DEFAULT_PORT, SimulatorServer
from pipelines.simulator.store import KlineStore, ReplayClock

__all__ = ["DEFAULT_PORT", "FaultPlan", "KlineStore", "ReplayClock", "SimulatorServer"]
