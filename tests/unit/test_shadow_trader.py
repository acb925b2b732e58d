"""The shadow challenger and the trader group without Spark or Cassandra: hypothetical fills equal to a trader of the
challenger's own, nothing sent and nothing changed for the champion, idle without a challenger, hot swap, exactly
once across a crash between the champion's commit and the shadow's, a bad champion rolled back by the monitor."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch

from models.broker import Fill, OrderRequest, PaperBroker
from models.checkpoint import Checkpoint
from models.config import EnvConfig
from models.kline import HOUR_MS, Kline
from models.policy import Policy
from models.records import OrderRecord
from streaming.monitor import LiveMonitor, MonitorConfig
from streaming.online_learner import OnlineConfig
from streaming.online_trader import OnlineTrader, TraderConfig
from streaming.risk import RiskLimits
from streaming.shadow import ShadowTrader, shadow_trader_id
from streaming.trader_group import TraderGroup
from tests.trader_fakes import (
    Alerts,
    FakeRegistry,
    MemoryCheckpoints,
    MemorySink,
    StaticModelSource,
    hourly_batches,
    make_policy,
    market,
    scripted_policy,
    to_klines,
)

WARMUP = 33
LOOSE = RiskLimits(max_position_units=1e9, max_order_notional=1e12, daily_loss_limit=1e12)
CONFIG = TraderConfig(fee_rate=0.001, slippage_bps=2.0, online=OnlineConfig(enabled=False))
SHADOW = shadow_trader_id(CONFIG.trader_id)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def days() -> tuple[object, list[list[Kline]], dict[str, Policy]]:
    frame = market(WARMUP + 96, seed=3)
    policies = {"1": make_policy(frame, seed=8), "2": make_policy(frame, seed=0), "3": make_policy(frame, seed=5)}
    return frame, hourly_batches(to_klines(frame), 12), policies


class CountingBroker(PaperBroker):
    def __init__(self, fee_rate: float, slippage_bps: float) -> None:
        super().__init__(fee_rate, slippage_bps)
        self.sent: list[str] = []

    def submit(self, order: OrderRequest) -> Fill:
        self.sent.append(order.client_order_id)
        return super().submit(order)


def group(sink: MemorySink, store: MemoryCheckpoints, champion: StaticModelSource,
          challenger: StaticModelSource | None, monitor: MonitorConfig | None = None,
          registry: FakeRegistry | None = None, alerts: Alerts | None = None,
          config: TraderConfig = CONFIG) -> TraderGroup:  # fmt: skip
    broker = CountingBroker(config.fee_rate, config.slippage_bps)
    trader = OnlineTrader.start(config, champion, broker, sink, store, LOOSE, alerts=alerts)
    shadow = None
    if challenger is not None:
        shadow_config = replace(config, trader_id=shadow_trader_id(config.trader_id))
        shadow = ShadowTrader.start(shadow_config, challenger, sink, store, LOOSE, alerts=alerts)
    live = None
    if monitor is not None:
        live = LiveMonitor.start(monitor, config.trader_id, trader.symbol, sink, store, registry,
                                 shadow.trader_id if shadow else None, alerts)  # fmt: skip
    return TraderGroup(trader, shadow, live)


def alone(policies: dict[str, Policy], version: str, batches: list[list[Kline]], trader_id: str,
          config: TraderConfig = CONFIG) -> MemorySink:  # fmt: skip
    """The rows of a plain trader of ``version`` under ``trader_id``, with the paper broker."""
    sink = MemorySink()
    broker = PaperBroker(config.fee_rate, config.slippage_bps)
    trader = OnlineTrader.start(replace(config, trader_id=trader_id), StaticModelSource(policies, version), broker,
                                sink, MemoryCheckpoints(), LOOSE)  # fmt: skip
    for batch_id, batch in enumerate(batches):
        trader.process_batch(batch_id, batch)
    return sink


def without(rows: list[OrderRecord], *names: str) -> list[dict[str, object]]:
    return [{k: v for k, v in asdict(r).items() if k not in names} for r in rows]


def test_the_shadow_records_the_challenger_s_decisions_and_hypothetical_fills_and_sends_nothing(days) -> None:
    _, batches, policies = days
    sink, store = MemorySink(), MemoryCheckpoints()
    traders = group(sink, store, StaticModelSource(policies, "1"), StaticModelSource(policies, "2"))
    results = [traders.process_batch(i, b) for i, b in enumerate(batches)]
    assert all(r.shadow is not None and r.shadow.state == "traded" for r in results)

    champion_rows = {t: sink.rows(t, CONFIG.trader_id) for t in ("decisions", "orders", "positions")}
    shadow_rows = {t: sink.rows(t, SHADOW) for t in ("decisions", "orders", "positions")}
    assert len(shadow_rows["decisions"]) == len(champion_rows["decisions"]) == 96
    assert [d.open_time for d in shadow_rows["decisions"]] == [d.open_time for d in champion_rows["decisions"]]
    assert {d.model_version for d in shadow_rows["decisions"]} == {"2"}
    broker = traders.champion.broker
    assert isinstance(broker, CountingBroker)
    filled = [o for o in champion_rows["orders"] if o.status == "filled"]
    assert sorted(broker.sent) == sorted(o.client_order_id for o in filled), "only the champion's orders are sent"
    assert all(o.mode == "paper" for o in champion_rows["orders"])
    hypothetical = [o for o in shadow_rows["orders"] if o.status == "filled"]
    assert {o.side for o in hypothetical} == {"BUY", "SELL"}, "a challenger that never trades proves little"
    assert all(o.mode == "shadow" and o.exchange_order_id is None for o in shadow_rows["orders"])

    # the hypothetical P&L is exactly what a trader of the challenger would have made (same fees and slippage)
    own = alone(policies, "2", batches, SHADOW)
    assert shadow_rows["positions"] == own.rows("positions", SHADOW)
    assert shadow_rows["decisions"] == own.rows("decisions", SHADOW)
    unsent = ("mode", "exchange_order_id")
    assert without(shadow_rows["orders"], *unsent) == without(own.rows("orders", SHADOW), *unsent)
    assert shadow_rows["positions"][-1].fees_paid > 0.0
    # and the champion's rows are those it writes with no shadow beside it
    champion_alone = alone(policies, "1", batches, CONFIG.trader_id)
    for table, rows in champion_rows.items():
        assert rows == champion_alone.rows(table, CONFIG.trader_id), table


def test_without_a_challenger_the_shadow_idles_then_starts_at_the_champion_s_hour_and_follows_the_alias(days) -> None:
    _, batches, policies = days
    sink, store = MemorySink(), MemoryCheckpoints()
    champion, challenger = StaticModelSource(policies, "1"), StaticModelSource(policies, None)
    traders = group(sink, store, champion, challenger)
    states = []
    for batch_id, batch in enumerate(batches):
        challenger.current = {4: "2", 6: "3", 8: "1"}.get(batch_id, challenger.current)
        result = traders.process_batch(batch_id, batch)
        assert result.shadow is not None
        states.append(result.shadow.state)
    assert states == ["idle"] * 4 + ["traded"] * 4 + ["idle"] * 3
    assert traders.shadow is not None and "the champion's version 1" in (traders.shadow.idle_reason or "")
    decisions = sink.rows("decisions", SHADOW)
    first_hour = min(k.open_time for k in batches[4])
    assert decisions[0].open_time == first_hour, "no warm-up: it took over the champion's history"
    assert [d.open_time for d in decisions] == list(range(first_hour, first_hour + 48 * HOUR_MS, HOUR_MS))
    assert [d.model_version for d in decisions] == ["2"] * 24 + ["3"] * 24
    assert [d.swapped_from for d in decisions if d.swapped_from] == ["2"], "the alias moved: hot swap"
    assert sink.rows("positions", SHADOW)[0].day_start_equity == CONFIG.capital, "a new account"

    restarted = group(sink, store, champion, challenger)  # a restart while idle stays idle
    assert restarted.shadow is not None and restarted.shadow.idle
    after = restarted.process_batch(len(batches), [])
    assert after.shadow is not None and after.shadow.state == "idle"


def test_a_crash_between_the_champion_s_commit_and_the_shadow_s_replays_exactly(days) -> None:
    _, batches, policies = days

    class Crash(BaseException):
        pass

    class CrashingStore(MemoryCheckpoints):
        armed = True

        def save_checkpoint(self, trader_id: str, checkpoint: Checkpoint) -> None:
            if trader_id == SHADOW and checkpoint.batch_id == 5 and self.armed:
                self.armed = False
                raise Crash()
            super().save_checkpoint(trader_id, checkpoint)

    calm = MemorySink()
    calm_traders = group(calm, MemoryCheckpoints(), StaticModelSource(policies, "1"), StaticModelSource(policies, "2"))
    for batch_id, batch in enumerate(batches):
        calm_traders.process_batch(batch_id, batch)

    sink, store = MemorySink(), CrashingStore()
    first = group(sink, store, StaticModelSource(policies, "1"), StaticModelSource(policies, "2"))
    with pytest.raises(Crash):
        for batch_id, batch in enumerate(batches):
            first.process_batch(batch_id, batch)
    restarted = group(sink, store, StaticModelSource(policies, "1"), StaticModelSource(policies, "3"))
    replay = restarted.process_batch(5, batches[5])  # Spark replays the batch whose commit it did not log
    assert replay.skipped and replay.shadow is not None and replay.shadow.state == "traded"
    assert {d.model_version for d in replay.shadow.result.decisions} == {"2"}, "pinned to its first version"
    for batch_id in range(6, len(batches)):
        restarted.process_batch(batch_id, batches[batch_id])
    for trader_id in (CONFIG.trader_id, SHADOW):
        decisions = sink.rows("decisions", trader_id)
        assert len(decisions) == 96
        cut = [d for d in decisions if d.batch_id <= 5]
        assert cut == [d for d in calm.rows("decisions", trader_id) if d.batch_id <= 5], trader_id
        assert sink.rows("positions", trader_id)[: len(cut)] == calm.rows("positions", trader_id)[: len(cut)]


def test_a_shadow_that_fails_alerts_and_leaves_the_champion_alone(days) -> None:
    _, batches, policies = days

    class Broken(StaticModelSource):
        def load(self, version: str) -> Policy:
            raise ValueError(f"version {version} cannot be loaded")

    sink, alerts = MemorySink(), Alerts()
    traders = group(sink, MemoryCheckpoints(), StaticModelSource(policies, "1"), Broken(policies, "2"), alerts=alerts)
    results = [traders.process_batch(i, b) for i, b in enumerate(batches[:5])]
    assert [r.shadow.state for r in results if r.shadow] == ["failed"] * 5
    assert {a.kind for a in alerts} == {"shadow_failed"} and len(alerts.items) == 5
    assert not sink.rows("decisions", SHADOW)
    assert sink.rows("decisions", CONFIG.trader_id) == alone(policies, "1", batches[:5], CONFIG.trader_id).rows(
        "decisions", CONFIG.trader_id)  # fmt: skip


def test_a_churning_champion_is_flagged_and_rolled_back_and_the_stream_swaps_to_the_previous_version() -> None:
    frame = market(WARMUP + 72, seed=3)
    all_in = EnvConfig(accounting="portfolio", reward="log_return", position_step=1.0)
    policies = {"1": scripted_policy(frame, "hold", all_in), "2": scripted_policy(frame, "churn", all_in),
                "3": scripted_policy(frame, "hold", all_in)}  # fmt: skip
    config = replace(CONFIG, fee_rate=0.005)
    champion = StaticModelSource(policies, "2")
    registry, alerts, sink = FakeRegistry(champion="2", previous="1", source=champion), Alerts(), MemorySink()
    watch = MonitorConfig(window_hours=24, margin=0.01, auto_rollback=True)
    traders = group(sink, MemoryCheckpoints(), champion, StaticModelSource(policies, "3"), watch, registry, alerts,
                    config)  # fmt: skip
    for batch_id, batch in enumerate(hourly_batches(to_klines(frame), 6)):
        traders.process_batch(batch_id, batch)

    assert [a.kind for a in alerts] == ["champion_trailing", "champion_rolled_back"]
    trailing = alerts[0]
    assert trailing.details["challenger"] == 0.0 and trailing.details["champion"] < -0.05
    assert len(registry.rollbacks) == 1 and registry.champion == "1"
    decisions = sink.rows("decisions", config.trader_id)
    versions = [d.model_version for d in decisions]
    assert versions[:25] == ["2"] * 25 and versions[-1] == "1", "v2 judged after a full window, then swapped"
    assert [d.swapped_from for d in decisions if d.swapped_from] == ["2"]
    churned = [d.action for d in decisions[:24]]
    assert churned == [1, 2] * 12, "the scripted policy churns: a round trip every two hours"
    assert registry.tags["2"]["monitor.challenger_version"] == "3"
