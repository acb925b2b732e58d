"""The ports of the live trader: what it needs from the outside world, as protocols the adapters implement.

The online trader (``streaming/``) is written against these; the adapters (``adapters/``) implement them
without importing the trader, and unit tests pass fakes:

- :class:`TradeSink` — where decision, order and position rows go (``adapters.cassandra.trade_sink``);
- :class:`CheckpointStore` — where the trader's state is committed with its batch id
  (``adapters.cassandra.checkpoints``, ``adapters.checkpoint_files``);
- :class:`Controls` — operator switches read while it runs (``adapters.cassandra.controls``);
- :class:`ModelSource` — which model version to trade and that version's policy
  (``adapters.mlflow.registry.MlflowModelSource``, ``streaming.model_source``);
- :class:`OnlineLogger` — where the online weights are reported (``adapters.mlflow.tracking``);
- :class:`PositionSource` — the position rows the live monitor reads back (``adapters.cassandra.reader``);
- :class:`ChampionRegistry` — the champion alias as the live monitor sees and rolls it back
  (``adapters.mlflow.aliases.MlflowChampionRegistry``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from models.checkpoint import Checkpoint, InFlight
from models.policy import Policy
from models.records import DecisionRecord, OrderRecord, PositionRecord


class TradeSink(Protocol):
    """Upserts under deterministic keys: writing the same record twice leaves one row.

    ``write_*`` may buffer; :meth:`flush` returns once every row written before it is durable."""

    def write_decision(self, record: DecisionRecord) -> None: ...

    def write_order(self, record: OrderRecord) -> None: ...

    def write_position(self, record: PositionRecord) -> None: ...

    def flush(self) -> None: ...


class CheckpointStore(Protocol):
    """The last committed checkpoint of each trader, and the batch it has in flight."""

    def load_checkpoint(self, trader_id: str) -> Checkpoint | None: ...

    def save_checkpoint(self, trader_id: str, checkpoint: Checkpoint) -> None: ...

    def in_flight(self, trader_id: str) -> InFlight | None: ...

    def mark_in_flight(self, trader_id: str, batch_id: int, model_version: str) -> None: ...


class Controls(Protocol):
    """Operator controls the trader reads while it runs (e.g. the Cassandra ``controls`` table)."""

    def kill_switch_active(self) -> bool: ...


class ModelSource(Protocol):
    """``current_version()``: what the champion alias points to now; ``load(version)``: that version."""

    def current_version(self) -> str: ...

    def load(self, version: str) -> Policy: ...


class OnlineLogger(Protocol):
    """Receives the online (target-net) weights now and then."""

    def log_online(self, parent_version: str, policy: Policy, metrics: Mapping[str, float], step: int) -> None: ...


class PositionSource(Protocol):
    """The position rows of a trader between two hours (both included), in hour order."""

    def positions_between(self, trader_id: str, symbol: str, start: int | None, end: int) -> list[PositionRecord]:
        """``start`` None: from the trader's first hour."""
        ...


class ChampionRegistry(Protocol):
    """The champion alias for the live monitor (streaming/monitor.py)."""

    def champion_version(self) -> str | None:
        """The version the champion alias points to now (None when unset)."""
        ...

    def version_tags(self, version: str) -> Mapping[str, str]: ...

    def rollback(self, version: str, condition: str, tags: Mapping[str, str]) -> str:
        """Tag ``version`` with ``tags`` (why), put the ``previous`` champion back with the same call as
        ``klinestream promote --rollback``, then mark both versions with ``condition``; returns the new champion."""
        ...
