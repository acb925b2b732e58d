"""Online replay: the stream's own trader driven over history, without Kafka or Spark.

What the Spark job does with a micro-batch, :class:`~streaming.micro_batch.MicroBatchProcessor` does here
too — the judge, the hour aligner and :meth:`~streaming.online_trader.OnlineTrader.process_batch` — on the
Kafka records the ingestor would have written for a range of klines (key = symbol, value = the kline's
``klines.1h`` JSON, one offset after another in hour order), delivered ``hours_per_batch`` hours per
micro-batch (1 = hour-sized batches, as the live stream sees them). Around the trader: the paper broker, an
in-memory sink, an in-memory (or any) checkpoint store, and an in-memory model source (or a
:class:`~streaming.model_source.DirectoryModelSource`). With online learning on, the trader explores with
its seeded generator and learns after every hour exactly as in the stream; off, it acts greedily with the
model's weights. The trader's decisions do not depend on how hours are cut into micro-batches (each hour is
decided, learned from and checkpointed in order), so the replay's decisions are the stream's for the same
model, klines and seed (tests/integration/test_online_replay.py).

The replay starts the trader ``history_hours - 1`` hours before the range (the warm-up), so its first
decision is the range's first hour, flat with the starting capital, like the walk-forward's backtest.
:meth:`ReplayResult.curve` gives the equity at each decided hour's close before its order: with learning
off and the walk-forward's accounting it equals the backtest's curve of the same policy.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adapters.kafka import DlqRecord
from models.broker import PaperBroker
from models.checkpoint import Checkpoint, InFlight
from models.config import DEFAULT_CAPITAL
from models.errors import PermanentError
from models.kline import HOUR_MS, Kline
from models.policy import Policy
from models.ports import CheckpointStore, ModelSource
from models.records import DecisionRecord, OrderRecord, PositionRecord
from models.time_range import TimeRange
from streaming.batch_state import BatchStateStore
from streaming.dlq import RawRecord
from streaming.micro_batch import AlignerConfig, MicroBatchProcessor
from streaming.online_learner import OnlineConfig
from streaming.online_trader import OnlineTrader, TraderConfig
from streaming.risk import RiskLimits

log = logging.getLogger(__name__)

REPLAY_TOPIC = "replay.klines.1h"
#: Risk limits that refuse nothing (the backtest has none); a replay measures the model, not the limits.
NO_LIMITS = RiskLimits(max_position_units=1e12, max_order_notional=1e15, daily_loss_limit=1e15)


# --- the trader's services, in memory -------------------------------------------------------------
@dataclass
class MemorySink:
    """Decision, order and position rows keyed like the Cassandra tables (a rewrite replaces the row)."""

    decisions: dict[tuple[int, str], DecisionRecord] = field(default_factory=dict)
    orders: dict[tuple[int, str], OrderRecord] = field(default_factory=dict)
    positions: dict[int, PositionRecord] = field(default_factory=dict)

    def write_decision(self, record: DecisionRecord) -> None:
        self.decisions[(record.open_time, record.model_version)] = record

    def write_order(self, record: OrderRecord) -> None:
        self.orders[(record.open_time, record.client_order_id)] = record

    def write_position(self, record: PositionRecord) -> None:
        self.positions[record.open_time] = record

    def flush(self) -> None:
        return None


@dataclass
class MemoryCheckpointStore:
    """The last checkpoint and the batch in flight of each trader, in memory."""

    saved: dict[str, Checkpoint] = field(default_factory=dict)
    flights: dict[str, InFlight] = field(default_factory=dict)

    def load_checkpoint(self, trader_id: str) -> Checkpoint | None:
        return self.saved.get(trader_id)

    def save_checkpoint(self, trader_id: str, checkpoint: Checkpoint) -> None:
        self.saved[trader_id] = checkpoint

    def in_flight(self, trader_id: str) -> InFlight | None:
        return self.flights.get(trader_id)

    def mark_in_flight(self, trader_id: str, batch_id: int, model_version: str) -> None:
        self.flights[trader_id] = InFlight(batch_id, model_version)


class PolicySource:
    """A model source serving one in-memory policy under ``version``."""

    def __init__(self, policy: Policy, version: str = "replay") -> None:
        self.policy, self.version = policy, version

    def current_version(self) -> str:
        return self.version

    def load(self, version: str) -> Policy:
        if version != self.version:
            raise PermanentError(f"this replay serves model version {self.version!r}, not {version!r}")
        return self.policy


class MemoryBatchStates(BatchStateStore):
    """The aligner's per-batch states in memory (no file per micro-batch); failures would go to ``root``."""

    def __init__(self, root: Path, keep: int = 2) -> None:
        self.root, self.keep = root, keep
        self.states: dict[int, dict[str, Any]] = {}

    def batch_ids(self) -> list[int]:
        return sorted(self.states)

    def load_before(self, batch_id: int) -> dict[str, Any] | None:
        earlier = [b for b in self.states if b < batch_id]
        return self.states[max(earlier)] if earlier else None

    def save(self, batch_id: int, state: dict[str, Any]) -> None:
        self.states[batch_id] = state
        for old in self.batch_ids()[: -self.keep]:
            del self.states[old]


@dataclass
class ListDlq:
    records: list[DlqRecord] = field(default_factory=list)

    def write(self, records: Sequence[DlqRecord]) -> int:
        self.records.extend(records)
        return len(records)


# --- history as Kafka records ---------------------------------------------------------------------
def frame_klines(frame: pd.DataFrame) -> list[Kline]:
    """Contract-form kline rows → :class:`Kline` objects (missing optional values become None)."""
    names = [f for f in Kline.__dataclass_fields__]
    columns = {name: frame[name].tolist() for name in names}
    out = []
    for values in zip(*(columns[name] for name in names), strict=True):
        row: dict[str, Any] = {n: None if pd.isna(v) else v for n, v in zip(names, values, strict=True)}
        for name in ("open_time", "close_time", "count"):
            if row[name] is not None:
                row[name] = int(row[name])
        out.append(Kline(**row))
    return out


def kline_records(klines: Sequence[Kline], topic: str = REPLAY_TOPIC) -> list[RawRecord]:
    """The ``klines.1h`` records the ingestor would have appended, in (hour, symbol) order, each stamped
    just after its kline closed."""
    ordered = sorted(klines, key=lambda k: (k.open_time, k.symbol))
    return [
        RawRecord(topic, 0, offset, k.symbol.encode(), k.to_json("replay"), k.event_time + 1)
        for offset, k in enumerate(ordered)
    ]


def hour_batches(records: Sequence[RawRecord], klines_per_hour: int, hours_per_batch: int) -> list[list[RawRecord]]:
    """Micro-batches of ``hours_per_batch`` hours of records (records come one hour after another)."""
    size = klines_per_hour * hours_per_batch
    return [list(records[i : i + size]) for i in range(0, len(records), size)]


# --- the replay -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayConfig:
    """How the trader replays a range."""

    online: bool = False
    """Learn online (explore with the online epsilon, one gradient step per hour) or act greedily."""
    seed: int = 0
    """Seed of the online learner's exploration and replay sampling."""
    fee_rate: float = 0.001
    slippage_bps: float = 0.0
    accounting: str | None = "portfolio"
    """The trader's accounting (models.config.ACCOUNTINGS); None = the policy's training accounting, as
    ``klinestream stream`` trades by default. "portfolio" is the walk-forward's accounting."""
    hours_per_batch: int = 1
    """Hours per micro-batch (1 = as the live stream sees them; decisions do not depend on it)."""
    trader_id: str = "replay"
    online_config: OnlineConfig | None = None
    """The online learner's settings; None = the stream's defaults with ``online`` and ``seed``."""

    def trader_config(self) -> TraderConfig:
        online = self.online_config or OnlineConfig(enabled=self.online, seed=self.seed)
        return TraderConfig(trader_id=self.trader_id, fee_rate=self.fee_rate, slippage_bps=self.slippage_bps,
                            accounting=self.accounting, online=online)  # fmt: skip


@dataclass
class ReplayResult:
    """What the trader did over the range (its rows, as the stream writes them to Cassandra)."""

    decisions: list[DecisionRecord]
    orders: list[OrderRecord]
    positions: list[PositionRecord]
    trader: OnlineTrader
    dlq: list[DlqRecord]
    capital: float = DEFAULT_CAPITAL

    @property
    def open_time(self) -> np.ndarray:
        return np.array([d.open_time for d in self.decisions], dtype=np.int64)

    @property
    def actions(self) -> np.ndarray:
        return np.array([d.action for d in self.decisions], dtype=np.int64)

    @property
    def online_updates(self) -> int:
        return self.trader.online_updates

    def curve(self) -> np.ndarray:
        """float64 ``[N]``: the equity at each decided hour's close before its order (the first is the
        capital): the walk-forward backtest's marks."""
        prices = np.array([d.price for d in self.decisions], dtype=np.float64)
        cash = np.array([self.capital] + [p.cash for p in self.positions[:-1]], dtype=np.float64)
        units = np.array([0.0] + [p.units for p in self.positions[:-1]], dtype=np.float64)
        return cash + units * prices

    def trading(self) -> tuple[float, float, int]:
        """(fees, notional at the close, filled orders) of the decisions the curve covers (all but the
        last hour's, whose effect the curve does not reach)."""
        covered = {d.open_time for d in self.decisions[:-1]}
        filled = [o for o in self.orders if o.open_time in covered and o.status == "filled"]
        units = np.array([0.0] + [p.units for p in self.positions[:-1]], dtype=np.float64)
        prices = np.array([d.price for d in self.decisions[:-1]], dtype=np.float64)
        notional = float(np.sum(np.abs(np.diff(units)) * prices))
        return float(sum(o.fee for o in filled)), notional, len(filled)


def replay(
    source: ModelSource | Policy,
    klines: pd.DataFrame,
    test: TimeRange,
    config: ReplayConfig | None = None,
    checkpoints: CheckpointStore | None = None,
) -> ReplayResult:
    """Drive the stream's trader over ``test`` (klines must include the policy's history before it)."""
    config = config or ReplayConfig()
    if config.hours_per_batch < 1:
        raise PermanentError("hours_per_batch must be at least 1")
    source = PolicySource(source) if isinstance(source, Policy) else source
    policy = source.load(source.current_version())
    spec = policy.spec
    start = test.start_ms - (policy.history_hours - 1) * HOUR_MS
    inside = klines[(klines["open_time"] >= start) & (klines["open_time"] < test.end_ms)]
    frame = inside[inside["symbol"].isin(spec.symbols)]
    records = kline_records(frame_klines(frame))
    sink, dlq = MemorySink(), ListDlq()
    trader = OnlineTrader.start(config.trader_config(), source, PaperBroker(config.fee_rate, config.slippage_bps),
                                sink, checkpoints or MemoryCheckpointStore(), NO_LIMITS)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="klinestream-replay-") as root:
        processor = MicroBatchProcessor(AlignerConfig(spec.symbols, spec.traded_symbol), trader, dlq,
                                        MemoryBatchStates(Path(root)))  # fmt: skip
        for batch_id, batch in enumerate(hour_batches(records, len(spec.symbols), config.hours_per_batch)):
            processor.process(batch_id, batch)
        processor.finish()
    result = _result(sink, trader, dlq.records, test)
    log.info("replay range=%s online=%s seed=%d hours=%d online_updates=%d dlq=%d", test, config.online,
             config.seed, len(result.decisions), result.online_updates, len(dlq.records))  # fmt: skip
    return result


def _result(sink: MemorySink, trader: OnlineTrader, dlq: list[DlqRecord], test: TimeRange) -> ReplayResult:
    decisions = sorted((d for d in sink.decisions.values() if d.open_time >= test.start_ms), key=_hour)
    if not decisions or decisions[0].open_time != test.start_ms:
        first = decisions[0].open_time if decisions else None
        raise PermanentError(f"the replay's first decision is at {first}, not the range's first hour "
                             f"{test.start_ms}: the klines lack history before {test}")  # fmt: skip
    early = [d.open_time for d in sink.decisions.values() if d.open_time < test.start_ms]
    if early:
        raise PermanentError(f"the trader decided {len(early)} hour(s) before {test}: its account is not flat")
    hours = {d.open_time for d in decisions}
    orders = sorted((o for o in sink.orders.values() if o.open_time in hours), key=_hour)
    positions = [sink.positions[h] for h in sorted(hours)]
    return ReplayResult(decisions, orders, positions, trader, dlq, trader.config.capital)


def _hour(record: DecisionRecord | OrderRecord) -> int:
    return record.open_time


def weights(trader: OnlineTrader) -> Mapping[str, Any]:
    """The trader's policy and target networks' weights, flattened (``policy.<name>``, ``target.<name>``)."""
    assert trader.learner is not None
    agent = trader.learner.agent
    out = {f"policy.{k}": v for k, v in agent.policy_net.state_dict().items()}
    out.update({f"target.{k}": v for k, v in agent.target_net.state_dict().items()})
    return out
