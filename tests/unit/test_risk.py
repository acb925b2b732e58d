"""Risk limits: pure checks, and the trader holding them hour by hour (kill switch within a batch)."""

from __future__ import annotations

import pytest
import torch

from models.broker import PaperBroker
from models.config import EnvConfig
from models.kline import HOUR_MS
from models.policy import Policy
from models.records import NOT_EXECUTABLE
from streaming.online_learner import OnlineConfig
from streaming.online_trader import OnlineTrader, TraderConfig
from streaming.portfolio import DAY_MS
from streaming.risk import REJECTION_REASONS, AccountView, CachedKillSwitch, RiskLimits, check_order, not_executable
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

LIMITS = RiskLimits(max_position_units=3.0, max_order_notional=50_000.0, daily_loss_limit=1_000.0)
FLAT = AccountView(units=0.0, cash=100_000.0, equity=100_000.0, day_start_equity=100_000.0)


def test_check_order_refuses_what_breaks_a_limit_and_allows_the_rest() -> None:
    assert check_order(LIMITS, "BUY", 1.0, 20_000.0, FLAT, killed=False, fee_rate=0.001) is None
    assert check_order(LIMITS, "BUY", 1.0, 20_000.0, FLAT, killed=True, fee_rate=0.001) == "kill_switch"
    assert check_order(LIMITS, "SELL", 1.0, 20_000.0, FLAT, killed=True, fee_rate=0.001) == "kill_switch"
    assert check_order(LIMITS, "BUY", 3.0, 20_000.0, FLAT, killed=False, fee_rate=0.0) == "max_order_notional"
    full = AccountView(3.0, 40_000.0, 100_000.0, 100_000.0)
    assert check_order(LIMITS, "BUY", 1.0, 20_000.0, full, killed=False, fee_rate=0.0) == "max_position"
    losing = AccountView(1.0, 80_000.0, 98_999.0, 100_000.0)
    assert check_order(LIMITS, "BUY", 1.0, 20_000.0, losing, killed=False, fee_rate=0.0) == "daily_loss_limit"
    assert check_order(LIMITS, "SELL", 1.0, 20_000.0, losing, killed=False, fee_rate=0.0) is None
    poor = AccountView(0.0, 19_000.0, 19_000.0, 19_000.0)
    assert check_order(LIMITS, "BUY", 1.0, 20_000.0, poor, killed=False, fee_rate=0.0) == "insufficient_cash"
    assert check_order(RiskLimits(3.0, 50_000.0, 1_000.0, kill_switch=True), "BUY", 1.0, 20_000.0, FLAT,
                       killed=False, fee_rate=0.0) == "kill_switch"  # fmt: skip


def test_cached_kill_switch_rereads_the_control_after_its_ttl() -> None:
    now = [0.0]
    controls = SwitchControls(on_after=1)
    switch = CachedKillSwitch(controls, ttl_seconds=1.0, clock=lambda: now[0])
    assert not switch.active() and not switch.active() and controls.reads == 1
    now[0] = 1.5
    assert switch.active() and controls.reads == 2


def always(action: int, frame, env: EnvConfig | None = None) -> Policy:
    """A policy whose Q-values always prefer ``action``."""
    policy = make_policy(frame, env=env)
    with torch.no_grad():
        for parameter in policy.network.parameters():
            parameter.zero_()
        last_bias = list(policy.network.parameters())[-1]
        last_bias[action] = 1.0
    return policy


def trade(policy: Policy, limits: RiskLimits, hours: int = 24 * 4, controls=None, batch_hours: int = 24):
    frame = market(33 + hours, seed=5)
    sink = MemorySink()
    config = TraderConfig(fee_rate=0.001, online=OnlineConfig(enabled=False), control_ttl_seconds=0.0)
    trader = OnlineTrader.start(config, StaticModelSource({"1": policy}, "1"), PaperBroker(0.001, 0.0), sink,
                                MemoryCheckpoints(), limits, controls=controls)  # fmt: skip
    klines = to_klines(frame)
    warmup = [k for k in klines if k.open_time < int(frame["open_time"].min()) + 33 * HOUR_MS]
    trader.process_batch(0, warmup)
    seen = set(warmup)
    rest = hourly_batches([k for k in klines if k not in seen], batch_hours)
    return sink, [trader.process_batch(i, b) for i, b in enumerate(rest, start=1)]


@pytest.fixture(scope="module")
def frame():
    return market(60, seed=5)


def test_max_position_and_max_notional_hold_hour_by_hour(frame) -> None:
    sink, _ = trade(always(1, frame), RiskLimits(max_position_units=3.0, max_order_notional=1e9, daily_loss_limit=1e9))
    units = [p.units for p in sorted(sink.positions.values(), key=lambda p: p.open_time)]
    assert max(units) == 3.0 and units[-1] == 3.0
    reasons = {o.reason for o in sink.orders.values() if o.status == "rejected"}
    assert reasons == {"max_position"}
    small, _ = trade(always(1, frame), RiskLimits(max_position_units=10.0, max_order_notional=10_000.0,
                                                  daily_loss_limit=1e9))  # fmt: skip
    assert all(o.status == "rejected" and o.reason == "max_order_notional" for o in small.orders.values())
    assert all(p.units == 0.0 for p in small.positions.values())


def test_daily_loss_stop_blocks_buys_until_the_next_utc_day(frame) -> None:
    sink, _ = trade(always(1, frame), RiskLimits(max_position_units=5.0, max_order_notional=1e9, daily_loss_limit=50.0))
    positions = {p.open_time: p for p in sink.positions.values()}
    stopped = [o for o in sink.orders.values() if o.reason == "daily_loss_limit"]
    filled = [o for o in sink.orders.values() if o.status == "filled"]
    assert stopped and filled, "the synthetic market must fall enough in some day for this test to mean something"
    for order in filled:  # the day's loss, marked at the decision's close before the order, was under the limit
        pos = positions[order.open_time]
        assert pos.day_start_equity - (pos.equity + order.fee) < 50.0
    for order in stopped:
        pos = positions[order.open_time]
        assert pos.day_start_equity - pos.equity >= 50.0
        day = order.open_time // DAY_MS
        later = [o for o in filled if o.open_time > order.open_time and o.open_time // DAY_MS == day]
        assert all(o.side == "SELL" for o in later)


def test_kill_switch_stops_orders_within_the_batch_while_decisions_are_still_recorded(frame) -> None:
    controls = SwitchControls(on_after=2)  # turns on after the second order of the first batch
    sink, results = trade(always(1, frame), RiskLimits(10.0, 1e9, 1e9), hours=24, controls=controls)
    assert len(results) == 1 and len(results[0].decisions) == 24
    statuses = [o.status for o in sorted(sink.orders.values(), key=lambda o: o.open_time)]
    assert statuses[:2] == ["filled", "filled"]
    assert statuses[2:] == ["rejected"] * 22
    assert all(o.reason == "kill_switch" for o in sink.orders.values() if o.status == "rejected")
    assert all(d.order_status in ("filled", "rejected") for d in sink.decisions.values())


def test_not_executable_is_a_fact_of_the_account_before_any_risk_check() -> None:
    assert not_executable("SELL", 1.0, 0.0) == "no_position"  # nothing held
    assert not_executable("SELL", 0.0, 2.0) == "no_position"  # nothing the accounting would sell
    assert not_executable("BUY", 0.0, 0.0) == "no_room"  # portfolio accounting at its maximum, or no cash
    assert not_executable("BUY", 1.0, 0.0) is None and not_executable("SELL", 1.0, 1.0) is None
    assert {"no_position", "no_room"}.isdisjoint(REJECTION_REASONS)


def test_a_sell_with_nothing_held_is_a_decision_to_do_nothing_not_an_order_even_under_the_kill_switch(frame) -> None:
    controls = SwitchControls(on_after=5)  # the kill switch comes on in the middle: it changes nothing here
    sink, results = trade(always(2, frame), RiskLimits(10.0, 1e9, 1e9), hours=24, controls=controls)
    decisions = list(sink.decisions.values())
    assert len(decisions) == 24 and all(d.action == 2 for d in decisions)
    assert not sink.orders and not results[0].orders, "no order row for a sell with nothing held"
    assert all(d.order_status == NOT_EXECUTABLE and d.order_reason == "no_position" for d in decisions)
    assert all(d.client_order_id is None for d in decisions)
    assert all(p.units == 0.0 and p.fees_paid == 0.0 for p in sink.positions.values())


def test_a_buy_with_no_room_is_not_an_order_and_a_real_refusal_stays_a_rejected_order(frame) -> None:
    all_in = EnvConfig(accounting="portfolio", reward="log_return", position_step=1.0, max_position=1.0)
    sink, _ = trade(always(1, frame, all_in), RiskLimits(1e9, 1e9, 1e9), hours=24)
    decisions = sorted(sink.decisions.values(), key=lambda d: d.open_time)
    assert [o.status for o in sink.orders.values()] == ["filled"], "one buy puts all the equity in"
    assert decisions[0].order_status == "filled" and decisions[0].order_reason is None
    assert all(d.order_status == NOT_EXECUTABLE and d.order_reason == "no_room" for d in decisions[1:])
    capped, _ = trade(always(1, frame), RiskLimits(max_position_units=2.0, max_order_notional=1e9,
                                                   daily_loss_limit=1e9), hours=24)  # fmt: skip
    rejected = [o for o in capped.orders.values() if o.status == "rejected"]
    assert len(rejected) == 22 and {o.reason for o in rejected} == {"max_position"}
    refused = [d for d in capped.decisions.values() if d.order_status == "rejected"]
    assert len(refused) == 22 and all(d.order_reason == "max_position" and d.client_order_id for d in refused)
