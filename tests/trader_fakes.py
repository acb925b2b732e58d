"""In-memory stand-ins for the online trader's services (unit tests only) and small policies."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from models.alerts import Alert
from models.checkpoint import Checkpoint, InFlight
from models.config import AgentConfig, EnvConfig, config_to_dict
from models.errors import PermanentError, TemporaryError
from models.features import Normalizer, compute_feature_table, infer_spec
from models.kline import Kline
from models.networks import build_policy_network
from models.policy import Policy
from models.records import DecisionRecord, OrderRecord, PositionRecord
from models.synthetic import synthetic_klines

SYMBOLS = ("BNBUSDT", "BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT")


def make_policy(
    frame: pd.DataFrame,
    seed: int = 0,
    variant: str = "linear",
    env: EnvConfig | None = None,
    agent: AgentConfig | None = None,
) -> Policy:
    """A randomly initialised policy whose features and normalisation are fitted on ``frame`` (``agent``:
    its config, e.g. dueling or an ensemble; default a plain network of ``variant``)."""
    spec = infer_spec(frame, SYMBOLS, "BTCUSDT", window=10)
    normalizer = Normalizer.fit(compute_feature_table(frame, spec), spec)
    config = agent or AgentConfig(variant=variant)
    torch.manual_seed(seed)
    network = build_policy_network(config, spec.window, spec.n_features, spec.n_account)
    metadata = {"env_config": config_to_dict(env or EnvConfig())}
    return Policy(spec, normalizer, config, network, metadata)


def default_policy(frame: pd.DataFrame, seed: int = 0, variant: str = "linear", **options: Any) -> Policy:
    """:func:`make_policy` with the platform's default training configuration of ``variant``
    (pipelines.train.default_configs: fee-aware reward, portfolio accounting) and ``options`` set on its
    agent or environment config (models.options: e.g. ``min_hold_hours=4``, ``ensemble_members=3``)."""
    from models.options import apply_options
    from pipelines.train import default_configs

    agent, env, _ = apply_options(default_configs(variant), options)
    return make_policy(frame, seed, variant, env, agent)


def market(hours: int, seed: int = 0, missing_hours: tuple[int, ...] = ()) -> pd.DataFrame:
    return synthetic_klines(hours, SYMBOLS, "BTCUSDT", seed=seed, missing_hours=missing_hours)


def to_klines(frame: pd.DataFrame) -> list[Kline]:
    out = []
    for row in frame.to_dict("records"):
        clean: dict[str, Any] = {
            str(k): (None if v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v) for k, v in row.items()
        }
        for name in ("open_time", "close_time", "count"):
            if clean.get(name) is not None:
                clean[name] = int(clean[name])
        out.append(Kline(**clean))
    return out


def hourly_batches(klines: list[Kline], hours_per_batch: int) -> list[list[Kline]]:
    """Klines grouped into micro-batches of ``hours_per_batch`` hours each, in hour order."""
    hours = sorted({k.open_time for k in klines})
    groups = [set(hours[i : i + hours_per_batch]) for i in range(0, len(hours), hours_per_batch)]
    return [[k for k in klines if k.open_time in group] for group in groups]


@dataclass
class MemorySink:
    decisions: dict[tuple[str, str, int, str], DecisionRecord] = field(default_factory=dict)
    orders: dict[tuple[str, str, int, str], OrderRecord] = field(default_factory=dict)
    positions: dict[tuple[str, str, int], PositionRecord] = field(default_factory=dict)
    writes: int = 0
    flushes: int = 0

    def write_decision(self, record: DecisionRecord) -> None:
        self.decisions[(record.trader_id, record.symbol, record.open_time, record.model_version)] = record
        self.writes += 1

    def write_order(self, record: OrderRecord) -> None:
        self.orders[(record.trader_id, record.symbol, record.open_time, record.client_order_id)] = record
        self.writes += 1

    def write_position(self, record: PositionRecord) -> None:
        self.positions[(record.trader_id, record.symbol, record.open_time)] = record
        self.writes += 1

    def flush(self) -> None:
        self.flushes += 1

    def positions_between(self, trader_id: str, symbol: str, start: int | None, end: int) -> list[PositionRecord]:
        rows = [p for (t, s, h), p in self.positions.items()
                if t == trader_id and s == symbol and h <= end and (start is None or h >= start)]  # fmt: skip
        return sorted(rows, key=lambda p: p.open_time)

    def rows(self, table: str, trader_id: str) -> list[Any]:
        """One trader's rows of ``decisions``, ``orders`` or ``positions``, in hour order."""
        found = [r for r in getattr(self, table).values() if r.trader_id == trader_id]
        return sorted(found, key=lambda r: r.open_time)


@dataclass
class MemoryCheckpoints:
    saved: dict[str, Checkpoint] = field(default_factory=dict)
    flights: dict[str, InFlight] = field(default_factory=dict)
    saves: int = 0

    def load_checkpoint(self, trader_id: str) -> Checkpoint | None:
        return self.saved.get(trader_id)

    def save_checkpoint(self, trader_id: str, checkpoint: Checkpoint) -> None:
        self.saved[trader_id] = checkpoint
        self.saves += 1

    def in_flight(self, trader_id: str) -> InFlight | None:
        return self.flights.get(trader_id)

    def mark_in_flight(self, trader_id: str, batch_id: int, model_version: str) -> None:
        self.flights[trader_id] = InFlight(batch_id, model_version)


@dataclass
class StaticModelSource:
    """``current`` None: the alias is not set (what the registry says with a permanent error)."""

    policies: dict[str, Policy]
    current: str | None
    loads: list[str] = field(default_factory=list)

    def current_version(self) -> str:
        if self.current is None:
            raise PermanentError("no such alias")
        return self.current

    def load(self, version: str) -> Policy:
        self.loads.append(version)
        return self.policies[version]


@dataclass
class SwitchControls:
    """A kill switch that turns on after ``on_after`` reads."""

    on_after: int = 10**9
    reads: int = 0

    def kill_switch_active(self) -> bool:
        self.reads += 1
        return self.reads > self.on_after


def scripted_policy(frame: pd.DataFrame, script: str, env: EnvConfig | None = None) -> Policy:
    """A linear policy that does what ``script`` says whatever the market: ``hold``, ``buy`` or ``sell`` always,
    or ``churn`` (buy when flat, sell when holding: a round trip, two fees, every two hours)."""
    policy = make_policy(frame, env=env)
    layers = [m for m in policy.network.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for parameter in policy.network.parameters():
            parameter.zero_()
        last = layers[-1]
        if script == "churn":
            exposure = policy.spec.window * policy.spec.n_features  # the first account feature
            layers[0].weight[0, exposure] = 1.0
            for layer in layers[1:-1]:
                layer.weight[0, 0] = 1.0
            last.weight[1, 0], last.weight[2, 0] = -100.0, 100.0
            last.bias.copy_(torch.tensor([0.5, 1.0, 0.0]))
        else:
            last.bias[("hold", "buy", "sell").index(script)] = 1.0
    return policy


@dataclass
class FakeRegistry:
    """The champion alias (:class:`models.ports.ChampionRegistry`); a rollback also moves ``source`` if given."""

    champion: str | None = "2"
    previous: str | None = "1"
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    rollbacks: list[str] = field(default_factory=list)
    unavailable: int = 0
    """Answer this many calls with a temporary error first."""
    source: StaticModelSource | None = None

    def champion_version(self) -> str | None:
        if self.unavailable:
            self.unavailable -= 1
            raise TemporaryError("registry away")
        return self.champion

    def version_tags(self, version: str) -> dict[str, str]:
        return self.tags.get(version, {})

    def rollback(self, version: str, condition: str, tags: Any) -> str:
        self.tags.setdefault(version, {}).update(tags)
        if self.previous is None:
            raise PermanentError("no previous alias: nothing to roll back to")
        self.champion, self.previous = self.previous, None
        self.tags[version]["monitor.rolled_back_condition"] = condition
        self.rollbacks.append(condition)
        if self.source is not None:
            self.source.current = self.champion
        return self.champion


class Alerts:
    """An alert sink that keeps what it is given."""

    def __init__(self) -> None:
        self.items: list[Alert] = []

    def emit(self, alert: Alert) -> None:
        self.items.append(alert)

    def __iter__(self) -> Iterator[Alert]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Alert:
        return self.items[index]
