"""The exchange simulator: a Binance spot API subset (REST + kline streams) served from kline files or
the lake, with paper fills and fault injection. A development tool and a test double, not a batch step;
see :mod:`simulator.server`."""

from simulator.faults import FaultPlan
from simulator.server import DEFAULT_PORT, SimulatorServer
from simulator.store import KlineStore, ReplayClock

__all__ = ["DEFAULT_PORT", "FaultPlan", "KlineStore", "ReplayClock", "SimulatorServer"]
