"""The online trader trades the new default agents and every turnover rule and ensemble option exactly as
the backtest does (online learning off), and restarts from its checkpoint exactly (online learning on)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from models.accounting import with_turnover_rules
from models.broker import PaperBroker
from models.kline import HOUR_MS, Kline
from models.records import MIN_HOLD, NOT_EXECUTABLE
from models.time_range import TimeRange
from pipelines.evaluate import policy_decider, run_backtest
from pipelines.walkforward.backtests import portfolio_config
from streaming.online_learner import OnlineConfig
from streaming.online_trader import OnlineTrader, TraderConfig
from streaming.risk import RiskLimits
from tests.trader_fakes import (
    MemoryCheckpoints,
    MemorySink,
    StaticModelSource,
    default_policy,
    hourly_batches,
    to_klines,
)
from tests.trader_fakes import market as make_market

WARMUP = 33
HOURS = 24 * 14
LOOSE = RiskLimits(max_position_units=1e9, max_order_notional=1e12, daily_loss_limit=1e12)
FEE = 0.001
OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "half-steps-hold-4h": {"position_step": 0.5, "min_hold_hours": 4, "turnover_penalty": 0.5},
    "all-in-hold-6h": {"position_step": 1.0, "min_hold_hours": 6},
    "ensemble-mean-dueling": {"ensemble_members": 3, "dueling": True},
    "ensemble-vote-lstm": {"ensemble_members": 3, "ensemble_rule": "vote", "variant": "lstm", "min_hold_hours": 3},
}
torch.set_num_threads(1)  # tiny networks, as the other trainer tests
SEEDS = {"ensemble-mean-dueling": 46}
"""Network seeds (default 8): an untrained dueling ensemble's mean Q mostly picks one action at every hour;
seed 46 is one that both buys and sells on this market."""


@pytest.fixture(scope="module")
def market() -> tuple[Any, list[Kline]]:
    frame = make_market(WARMUP + HOURS, seed=3)
    return frame, to_klines(frame)


def _policy(frame: Any, name: str) -> Any:
    options = dict(OPTIONS[name])
    return default_policy(frame, SEEDS.get(name, 8), options.pop("variant", "linear"), **options)


def _trader(policy: Any, sink: MemorySink, store: MemoryCheckpoints, online: OnlineConfig) -> OnlineTrader:
    config = TraderConfig(fee_rate=FEE, online=online)
    return OnlineTrader.start(config, StaticModelSource({"1": policy}, "1"), PaperBroker(FEE, 0.0), sink, store, LOOSE)


def _executed_offline(policy: Any, frame: Any) -> tuple[list[int], list[int]]:
    """(decision hours, the backtest's executed actions) through the evaluation path with the policy's rules."""
    first = int(frame["open_time"].min()) + WARMUP * HOUR_MS
    rows, decide, table = policy_decider(policy, frame, TimeRange(first, first + HOURS * HOUR_MS, "test"))
    executed: list[int] = []
    envs: list[Any] = []

    def recording(step: int, env: Any) -> np.ndarray:
        if step:
            executed.append(int(env.last_actions[0]))
        envs[:] = [env]
        return decide(step, env)

    config = with_turnover_rules(portfolio_config(FEE), policy.env_config)
    run_backtest(table.close, table.tradable, rows, recording, config)
    executed.append(int(envs[0].last_actions[0]))
    return [int(table.open_time[r]) for r in rows[:-1]], executed


@pytest.mark.parametrize("name", list(OPTIONS))
def test_the_trader_executes_the_backtests_actions_with_the_policys_rules(market, name: str) -> None:
    frame, klines = market
    policy = _policy(frame, name)
    sink = MemorySink()
    trader = _trader(policy, sink, MemoryCheckpoints(), OnlineConfig(enabled=False))
    for batch_id, batch in enumerate(hourly_batches(klines, 5)):
        trader.process_batch(batch_id, batch)
    hours, offline = _executed_offline(policy, frame)
    live = {d.open_time: d.action for d in sink.decisions.values()}
    got = [live[h] for h in hours]
    buys_sells = [a for a in got if a]
    assert got == offline
    assert len(set(buys_sells)) == 2, f"{name}: a policy that never buys or never sells proves little"
    hold = policy.env_config.min_hold_hours
    if hold > 1:
        filled = sorted(o.open_time for o in sink.orders.values() if o.status == "filled")
        assert min(np.diff(filled)) >= hold * HOUR_MS, "two fills within the minimum holding time"
        blocked = [d for d in sink.decisions.values() if d.action == 0 and d.greedy_action != 0 and d.tradable]
        assert blocked, "the minimum holding time never blocked a trade: the test proves little"
        said = [d for d in sink.decisions.values() if d.order_reason == MIN_HOLD]
        assert said == blocked and all(d.order_status == NOT_EXECUTABLE and d.client_order_id is None for d in said)


@pytest.mark.parametrize("name", ["half-steps-hold-4h", "ensemble-vote-lstm"])
def test_a_restart_from_the_checkpoint_continues_like_an_uninterrupted_run(market, name: str) -> None:
    frame, klines = market
    policy = _policy(frame, name)
    learning = OnlineConfig(enabled=True, epsilon=0.1, batch_size=8, learn_starts=8, target_sync_every=5,
                            buffer_size=500)  # fmt: skip
    batches = hourly_batches([k for k in klines if k.open_time < klines[0].open_time + 100 * HOUR_MS], 4)
    plain_sink = MemorySink()
    plain = _trader(policy, plain_sink, MemoryCheckpoints(), learning)
    for batch_id, batch in enumerate(batches):
        plain.process_batch(batch_id, batch)

    sink, store = MemorySink(), MemoryCheckpoints()
    first = _trader(policy, sink, store, learning)
    for batch_id, batch in enumerate(batches[:15]):
        first.process_batch(batch_id, batch)
    crashed = replace(store.saved["paper-BTCUSDT"])
    first.process_batch(15, batches[15])  # rows written, then the crash before the checkpoint
    store.saved["paper-BTCUSDT"] = crashed
    restarted = _trader(policy, sink, store, learning)
    for batch_id, batch in enumerate(batches[15:], start=15):
        restarted.process_batch(batch_id, batch)
    assert restarted.online_updates == plain.online_updates > 0
    assert sink.decisions == plain_sink.decisions and sink.orders == plain_sink.orders
    assert restarted.portfolio.last_trade_hour == plain.portfolio.last_trade_hour is not None
    learner = restarted.learner
    assert learner is not None and len(learner.agents) == policy.agent_config.ensemble_members
    served = policy.network.state_dict()
    for k, agent in enumerate(learner.agents):  # every member learned online
        prefix = f"members.{k}." if len(learner.agents) > 1 else ""
        moved = [not torch.equal(v, served[prefix + n]) for n, v in agent.policy_net.state_dict().items()]
        assert any(moved), f"member {k} did not learn"
