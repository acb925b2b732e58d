"""The online trader without Spark or Cassandra: exactly-once batches, restarts, backtest equality, hot swap."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.broker import Fill, OrderRequest, PaperBroker
from models.checkpoint import Checkpoint
from models.config import EnvConfig
from models.errors import TemporaryError
from models.kline import HOUR_MS, Kline
from models.time_range import TimeRange
from pipelines.evaluate import policy_decider, run_backtest
from streaming.online_learner import OnlineConfig
from streaming.online_trader import OnlineTrader, TraderConfig
from streaming.risk import RiskLimits
from tests.trader_fakes import (
    MemoryCheckpoints,
    MemorySink,
    StaticModelSource,
    SwitchControls,
    hourly_batches,
    make_policy,
    market,
    to_klines,
)

WARMUP = 33  # hours before the first state (24 h of rolling features + a 10 h window - 1)
LOOSE = RiskLimits(max_position_units=1e9, max_order_notional=1e12, daily_loss_limit=1e12)
LEARNING = OnlineConfig(enabled=True, epsilon=0.1, batch_size=8, learn_starts=8, target_sync_every=5, buffer_size=500)


def start(source: StaticModelSource, sink: MemorySink, store: MemoryCheckpoints, online: OnlineConfig,
          fee_rate: float = 0.0) -> OnlineTrader:  # fmt: skip
    config = TraderConfig(fee_rate=fee_rate, online=online)
    return OnlineTrader.start(config, source, PaperBroker(fee_rate, 0.0), sink, store, LOOSE)


def first_hours(klines: list[Kline], hours: int) -> list[Kline]:
    start = min(k.open_time for k in klines)
    return [k for k in klines if k.open_time < start + hours * HOUR_MS]


def run(trader: OnlineTrader, batches: list[list[Kline]], first_id: int = 0) -> None:
    for batch_id, batch in enumerate(batches, start=first_id):
        trader.process_batch(batch_id, batch)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks: one thread is faster than two fighting over a shared CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def month() -> tuple[object, list[Kline]]:
    frame = market(WARMUP + 24 * 31, seed=3)
    return frame, to_klines(frame)


def test_actions_equal_the_offline_backtest_hour_for_hour_when_online_learning_is_off(month) -> None:
    frame, klines = month
    policy = make_policy(frame, seed=8)  # a seed whose random network both buys and sells
    sink = MemorySink()
    trader = start(StaticModelSource({"7": policy}, "7"), sink, MemoryCheckpoints(), OnlineConfig(enabled=False))
    shuffled = [list(reversed(batch)) for batch in hourly_batches(klines, 5)]  # order within a batch is irrelevant
    run(trader, shuffled)

    first = int(frame["open_time"].min()) + WARMUP * HOUR_MS
    test = TimeRange(first, int(frame["open_time"].max()) + HOUR_MS, "month")
    rows, decide, table = policy_decider(policy, frame, test)
    offline: list[int] = []

    def recording(step: int, env):  # the backtest env's greedy actions, as executed (hold where not tradable)
        actions = decide(step, env)
        offline.append(int(actions[0]) if table.tradable[env.rows[0]] else 0)
        return actions

    run_backtest(table.close, table.tradable, rows, recording, EnvConfig())
    online = {d.open_time: d.action for d in sink.decisions.values()}
    hours = [int(table.open_time[r]) for r in rows[:-1]]
    assert len(hours) == 24 * 31 - 1 and min(online) == hours[0]
    assert [online[h] for h in hours] == offline
    assert len(set(offline)) >= 2, "a policy that always does the same thing makes this test vacuous"
    assert any(o.status == "filled" and o.side == "BUY" for o in sink.orders.values())


def test_a_replayed_batch_id_does_nothing(month) -> None:
    frame, klines = month
    source, sink, store = StaticModelSource({"1": make_policy(frame)}, "1"), MemorySink(), MemoryCheckpoints()
    trader = start(source, sink, store, LEARNING)
    batches = hourly_batches(first_hours(klines, 60), 6)
    run(trader, batches)
    writes, saves, updates = sink.writes, store.saves, trader.online_updates
    again = trader.process_batch(len(batches) - 1, batches[-1])
    assert again.skipped and again.decisions == ()
    assert (sink.writes, store.saves, trader.online_updates) == (writes, saves, updates)


def test_restart_from_checkpoint_continues_like_an_uninterrupted_run(month) -> None:
    frame, klines = month
    policy = make_policy(frame, seed=8)
    batches = hourly_batches(first_hours(klines, 120), 4)
    plain_sink = MemorySink()
    plain = start(StaticModelSource({"1": policy}, "1"), plain_sink, MemoryCheckpoints(), LEARNING, fee_rate=0.001)
    run(plain, batches)

    sink, store = MemorySink(), MemoryCheckpoints()
    first = start(StaticModelSource({"1": policy}, "1"), sink, store, LEARNING, fee_rate=0.001)
    run(first, batches[:20])
    # batch 20 crashes after its rows were written, before its checkpoint (the commit)
    crashed = replace(store.saved["paper-BTCUSDT"])
    first.process_batch(20, batches[20])
    store.saved["paper-BTCUSDT"] = crashed
    restarted = start(StaticModelSource({"1": policy}, "1"), sink, store, LEARNING, fee_rate=0.001)
    assert restarted.last_batch_id == 19 and restarted.online_updates == crashed.online_updates > 0
    run(restarted, batches[:20])  # Spark never resends committed batches, but if it did, nothing happens
    run(restarted, batches[20:], first_id=20)

    assert restarted.online_updates == plain.online_updates > crashed.online_updates
    assert sink.decisions == plain_sink.decisions
    assert sink.orders == plain_sink.orders
    assert sink.positions == plain_sink.positions
    assert any(d.explored for d in sink.decisions.values())
    assert sum(o.status == "filled" for o in sink.orders.values()) > 10


def test_hot_swap_changes_the_version_recorded_on_decisions(month) -> None:
    frame, klines = month
    source = StaticModelSource({"1": make_policy(frame, seed=8), "2": make_policy(frame, seed=11)}, "1")
    sink, store = MemorySink(), MemoryCheckpoints()
    trader = start(source, sink, store, OnlineConfig(enabled=False))
    batches = hourly_batches(first_hours(klines, 80), 4)
    run(trader, batches[:15])
    source.current = "2"
    swapped = trader.process_batch(15, batches[15])
    run(trader, batches[16:], first_id=16)

    assert swapped.swapped_from == "1" and swapped.model_version == "2"
    assert swapped.decisions[0].swapped_from == "1" and swapped.decisions[0].model_version == "2"
    versions = [d.model_version for d in sorted(sink.decisions.values(), key=lambda d: d.open_time)]
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}
    assert store.saved["paper-BTCUSDT"].model_version == "2"


def test_a_replayed_batch_keeps_the_version_it_first_ran_with(month) -> None:
    frame, klines = month
    source = StaticModelSource({"1": make_policy(frame, seed=8), "2": make_policy(frame, seed=11)}, "1")
    sink, store = MemorySink(), MemoryCheckpoints()
    trader = start(source, sink, store, OnlineConfig(enabled=False))
    batches = hourly_batches(first_hours(klines, 60), 4)
    run(trader, batches[:10])
    committed: Checkpoint = store.saved["paper-BTCUSDT"]
    first_try = trader.process_batch(10, batches[10])  # crashes before the commit ...
    store.saved["paper-BTCUSDT"] = committed
    source.current = "2"  # ... and the champion moves meanwhile
    restarted = start(source, sink, store, OnlineConfig(enabled=False))
    replayed = restarted.process_batch(10, batches[10])
    after = restarted.process_batch(11, batches[11])
    assert [d.model_version for d in replayed.decisions] == ["1"] * len(first_try.decisions)
    assert replayed.decisions == first_try.decisions
    assert after.swapped_from == "1" and {d.model_version for d in after.decisions} == {"2"}


def test_degraded_and_untradable_hours_are_decided_in_order(month) -> None:
    frame, klines = month
    sink = MemorySink()
    trader = start(StaticModelSource({"1": make_policy(frame)}, "1"), sink, MemoryCheckpoints(), LEARNING)
    hours = sorted({k.open_time for k in klines})
    eth_gap, btc_gap = hours[40], hours[45]
    kept = [
        k
        for k in first_hours(klines, 60)
        if (k.symbol, k.open_time) not in {("ETHUSDT", eth_gap), ("BTCUSDT", btc_gap)}
    ]
    batches = hourly_batches(kept, 1)
    for batch_id, batch in enumerate(batches):
        trader.process_batch(batch_id, batch, degraded={eth_gap, btc_gap})
    decided = sorted(sink.decisions.values(), key=lambda d: d.open_time)
    assert [d.open_time for d in decided] == hours[WARMUP:60]
    by_hour = {d.open_time: d for d in decided}
    assert by_hour[eth_gap].degraded and by_hour[eth_gap].tradable
    assert by_hour[btc_gap].degraded and not by_hour[btc_gap].tradable and by_hour[btc_gap].action == 0
    assert sum(d.degraded for d in decided) == 2


def test_a_context_symbol_without_any_kline_yet_delays_decisions_instead_of_failing(month) -> None:
    frame, klines = month
    sink = MemorySink()
    trader = start(StaticModelSource({"1": make_policy(frame)}, "1"), sink, MemoryCheckpoints(), LEARNING)
    hours = sorted({k.open_time for k in klines})
    eth_from = hours[10]  # ETHUSDT's first kline comes 10 hours after the others'
    kept = [k for k in first_hours(klines, 80) if k.symbol != "ETHUSDT" or k.open_time >= eth_from]
    for batch_id, batch in enumerate(hourly_batches(kept, 1)):
        trader.process_batch(batch_id, batch, degraded={k.open_time for k in batch})  # released degraded
    decided = sorted(sink.decisions.values(), key=lambda d: d.open_time)
    assert [d.open_time for d in decided] == hours[10 + WARMUP : 80]  # warm-up counted from ETH's first kline
    assert not any(d.degraded for d in decided)


def test_an_incomplete_hour_waits_until_it_is_complete_or_released(month) -> None:
    frame, klines = month
    sink = MemorySink()
    trader = start(StaticModelSource({"1": make_policy(frame)}, "1"), sink, MemoryCheckpoints(), LEARNING)
    hours = sorted({k.open_time for k in klines})
    trader.process_batch(0, [k for k in klines if k.open_time <= hours[40]])
    late = [k for k in klines if k.open_time == hours[41]]
    first = trader.process_batch(1, [k for k in late if k.symbol != "XRPUSDT"])
    assert first.decisions == () and first.waiting_hours == (hours[41],)
    second = trader.process_batch(2, [k for k in late if k.symbol == "XRPUSDT"])
    assert [d.open_time for d in second.decisions] == [hours[41]] and not second.decisions[0].degraded


@pytest.mark.parametrize("variant", ["linear", "lstm"])
def test_checkpoint_holds_the_whole_state_compactly(month, variant: str) -> None:
    frame, klines = month
    store = MemoryCheckpoints()
    trader = start(StaticModelSource({"1": make_policy(frame, variant=variant)}, "1"), MemorySink(), store, LEARNING)
    run(trader, hourly_batches(first_hours(klines, 200), 24))
    checkpoint = store.saved["paper-BTCUSDT"]
    assert checkpoint.batch_id == trader.last_batch_id and checkpoint.online_updates == trader.online_updates > 0
    assert len(checkpoint.blob) < 2_000_000
    assert np.isfinite(trader.portfolio.cash)


class RecordingLogger:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict[str, float], dict[str, torch.Tensor]]] = []

    def log_online(self, parent_version: str, policy, metrics, step: int) -> None:
        self.calls.append((parent_version, step, dict(metrics), policy.network.state_dict()))


def test_online_weights_are_logged_with_their_parent_version_and_differ_from_the_champion(month) -> None:
    frame, klines = month
    champion = make_policy(frame, seed=8)
    logger = RecordingLogger()
    config = TraderConfig(fee_rate=0.0, online=LEARNING, log_online_every=20)
    trader = OnlineTrader.start(config, StaticModelSource({"5": champion}, "5"), PaperBroker(0.0, 0.0), MemorySink(),
                                MemoryCheckpoints(), LOOSE, online_logger=logger)  # fmt: skip
    run(trader, hourly_batches(first_hours(klines, 100), 8))
    assert trader.online_updates >= 40 and [c[0] for c in logger.calls] == ["5"] * len(logger.calls)
    steps = [c[1] for c in logger.calls]
    assert len(steps) >= 2 and steps == sorted(steps) and all(s >= 20 for s in steps)
    served = champion.network.state_dict()
    last = logger.calls[-1][3]
    assert any(not torch.equal(last[name], served[name]) for name in served), "the target net never synced"


class FlakySource(StaticModelSource):
    """A model source whose registry goes away after a while."""

    down = False

    def current_version(self) -> str:
        if self.down:
            raise TemporaryError("MLflow at http://127.0.0.1:5000 unreachable")
        return super().current_version()


def test_trading_goes_on_with_the_loaded_version_while_the_registry_is_unreachable(month) -> None:
    frame, klines = month
    source = FlakySource({"1": make_policy(frame, seed=8), "2": make_policy(frame, seed=11)}, "1")
    sink = MemorySink()
    trader = start(source, sink, MemoryCheckpoints(), OnlineConfig(enabled=False))
    batches = hourly_batches(first_hours(klines, 60), 6)
    run(trader, batches[:6])
    source.down, source.current = True, "2"
    result = trader.process_batch(6, batches[6])
    assert result.decisions and {d.model_version for d in result.decisions} == {"1"}
    source.down = False
    assert trader.process_batch(7, batches[7]).swapped_from == "1"


class ExchangeBroker(PaperBroker):
    """A paper broker that remembers what it filled, like an exchange does (lookup by client order id)."""

    def __init__(self) -> None:
        super().__init__(0.0, 0.0)
        self.filled: dict[str, Fill] = {}

    @property
    def mode(self) -> str:
        return "testnet"

    def submit(self, order: OrderRequest) -> Fill:
        return self.filled.setdefault(order.client_order_id, super().submit(order))

    def lookup(self, order: OrderRequest) -> Fill | None:
        return self.filled.get(order.client_order_id)


def test_a_replayed_batch_books_orders_its_first_attempt_sent_although_the_kill_switch_is_now_on(month) -> None:
    frame, klines = month
    source = StaticModelSource({"1": make_policy(frame, seed=8)}, "1")
    sink, store, broker = MemorySink(), MemoryCheckpoints(), ExchangeBroker()
    config = TraderConfig(fee_rate=0.0, online=OnlineConfig(enabled=False), control_ttl_seconds=0.0)
    killed = SwitchControls()
    trader = OnlineTrader.start(config, source, broker, sink, store, LOOSE, controls=killed)
    batches = hourly_batches(first_hours(klines, 80), 10)
    run(trader, batches[:4])
    committed = store.saved["paper-BTCUSDT"]
    first_try = trader.process_batch(4, batches[4])  # sends its orders, then dies before the commit
    store.saved["paper-BTCUSDT"] = committed
    killed.on_after = 0  # the operator pulls the kill switch meanwhile
    restarted = OnlineTrader.start(config, source, broker, sink, store, LOOSE, controls=killed)
    replayed = restarted.process_batch(4, batches[4])
    after = restarted.process_batch(5, batches[5])
    sent = [o for o in first_try.orders if o.status == "filled"]
    assert sent and [o for o in replayed.orders if o.status == "filled"] == sent
    assert after.orders and all(o.reason == "kill_switch" for o in after.orders)


class _Journal:
    """One event log shared by a sink, a checkpoint store and a broker, to check the order of effects."""

    def __init__(self) -> None:
        self.events: list[str] = []


class _JournalSink(MemorySink):
    def __init__(self, journal: _Journal) -> None:
        super().__init__()
        self.journal, self.buffered = journal, 0

    def write_order(self, record) -> None:  # type: ignore[no-untyped-def]
        super().write_order(record)
        self.buffered += 1

    def write_decision(self, record) -> None:  # type: ignore[no-untyped-def]
        super().write_decision(record)
        self.buffered += 1

    def flush(self) -> None:
        self.journal.events.append(f"flush {self.buffered}")
        self.buffered = 0


class _JournalCheckpoints(MemoryCheckpoints):
    def __init__(self, journal: _Journal) -> None:
        super().__init__()
        self.journal = journal

    def save_checkpoint(self, trader_id: str, checkpoint: Checkpoint) -> None:
        self.journal.events.append("checkpoint")
        super().save_checkpoint(trader_id, checkpoint)


class _ExchangeBroker(PaperBroker):
    def __init__(self, journal: _Journal) -> None:
        super().__init__(0.0, 0.0)
        self.journal = journal

    @property
    def mode(self) -> str:
        return "testnet"

    def submit(self, order: OrderRequest) -> Fill:
        self.journal.events.append("submit")
        return super().submit(order)


@pytest.mark.parametrize("exchange", [False, True], ids=["paper", "testnet"])
def test_rows_are_flushed_before_the_checkpoint_and_before_an_order_leaves_for_an_exchange(month, exchange) -> None:
    frame, klines = month
    journal = _Journal()
    sink, store = _JournalSink(journal), _JournalCheckpoints(journal)
    broker = _ExchangeBroker(journal) if exchange else PaperBroker(0.0, 0.0)
    config = TraderConfig(fee_rate=0.0, online=OnlineConfig(enabled=False))
    trader = OnlineTrader.start(config, StaticModelSource({"8": make_policy(frame, seed=8)}, "8"), broker, sink,
                                store, LOOSE)  # fmt: skip
    run(trader, hourly_batches(first_hours(klines, WARMUP + 72), 12))
    events = journal.events
    assert events.count("checkpoint") == (WARMUP + 72) // 12 + 1
    for i, event in enumerate(events):  # every checkpoint follows a flush that left nothing buffered
        if event == "checkpoint":
            assert events[i - 1].startswith("flush")
    assert sink.buffered == 0 and sink.orders
    submits = [i for i, e in enumerate(events) if e == "submit"]
    sent = [o for o in sink.orders.values() if o.status != "rejected"]
    assert sent and len(submits) == (len(sent) if exchange else 0)
    assert all(events[i - 1].startswith("flush") and events[i - 1] != "flush 0" for i in submits)
