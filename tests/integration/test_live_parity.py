"""Stream / backtest parity on real services: with online learning off, the actions the live path records
(Kafka → Spark job → online trader → Cassandra) for every hour of January 2023 (real Binance klines from
../shared) equal, hour for hour, the offline backtest of the same saved policy (pipelines/evaluate.py)."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.config import EnvConfig
from models.kline import HOUR_MS
from models.settings import Settings
from tests.integration.live_helpers import live_topics, seed
from tests.integration.live_stream_helpers import (
    LOOSE_LIMITS,
    TRADED,
    close_trader,
    keyspace_dropped_after,
    new_keyspace,
    trader_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMBOLS = ("BNBUSDT", "BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT")
DEC_1, JAN_1, FEB_1 = 1_669_852_800_000, 1_672_531_200_000, 1_675_209_600_000
WARMUP = 33  # hours before the first state (24 h of rolling features + a 10 h window - 1)
POLICY_SEED = 1  # a seed whose random network buys and sells (about 30 round trips) in January 2023


def offline_actions(policy: Any, frame: Any) -> dict[int, int]:
    """The backtest's executed action (hold where the hour is not tradable) by open_time, January 2023."""
    from models.time_range import TimeRange
    from pipelines.evaluate import policy_decider, run_backtest

    rows, decide, table = policy_decider(policy, frame, TimeRange(JAN_1, FEB_1, "january-2023"))
    actions: list[int] = []

    def recording(step: int, env: Any) -> np.ndarray:
        chosen = decide(step, env)
        actions.append(int(chosen[0]) if table.tradable[env.rows[0]] else 0)
        return chosen

    run_backtest(table.close, table.tradable, rows, recording, EnvConfig())  # no fees, like the stream here
    return {int(table.open_time[r]): a for r, a in zip(rows[:-1], actions, strict=True)}


def test_stream_actions_equal_the_offline_backtest_hour_for_hour_when_online_learning_is_off(
    settings: Settings, stack: Any, spark: Any, shared_klines_dir: Path, tmp_path: Path
) -> None:
    from adapters.kline_files import read_kline_dirs
    from klinestream.commands.live import build_trader
    from streaming.spark_job import StreamOptions, run_stream
    from tests.trader_fakes import make_policy, to_klines

    stack.require("kafka", "cassandra", "spark")
    torch.set_num_threads(1)
    december = read_kline_dirs(shared_klines_dir, SYMBOLS, DEC_1, JAN_1)
    policy = make_policy(december, seed=POLICY_SEED)  # features and normalisation fitted before the test month
    model_dir = policy.save(tmp_path / "models" / "1")
    # the stream starts with exactly the warm-up before January, so its first decision (and its account)
    # starts at 2023-01-01 00:00 like the backtest's
    frame = read_kline_dirs(shared_klines_dir, SYMBOLS, JAN_1 - WARMUP * HOUR_MS, FEB_1)
    changes: dict[str, object] = {"cassandra_keyspace": new_keyspace("test_parity"), "symbols": SYMBOLS,
                                  "traded_symbol": TRADED, "fee_rate": 0.0, "slippage_bps": 0.0}  # fmt: skip
    changes |= LOOSE_LIMITS
    with live_topics(settings, **changes) as live, keyspace_dropped_after(live):
        seed(live, sorted(to_klines(frame), key=lambda k: (k.open_time, k.symbol)))  # as the ingestor does
        trader = build_trader(live, Path(model_dir), online=False)
        try:
            options = StreamOptions(name=f"parity-{uuid.uuid4().hex[:6]}", available_now=True,
                                    max_offsets_per_trigger=1000, checkpoint_dir=tmp_path / "checkpoint")  # fmt: skip
            outcomes: list[Any] = []
            run_stream(spark, live, trader, options, on_outcome=outcomes.append)
            decisions = trader_rows(trader, "decisions")
            orders = trader_rows(trader, "orders")
        finally:
            close_trader(trader)

    offline = offline_actions(policy, frame)
    streamed = {d["open_time"]: d["action"] for d in decisions}
    assert len(outcomes) >= 3, "expected several micro-batches"
    assert min(streamed) == JAN_1 and set(range(JAN_1, FEB_1, HOUR_MS)) <= set(streamed)
    assert len(offline) == 24 * 31 - 1  # the backtest's last hour has no next close to step to
    mismatches = {h: (streamed[h], a) for h, a in offline.items() if streamed[h] != a}
    assert not mismatches, f"stream vs backtest (stream, backtest) differ at {len(mismatches)} hours: {mismatches}"
    assert all(not d["explored"] and d["online_updates"] == 0 for d in decisions)
    assert {d["model_version"] for d in decisions} == {"1"}
    statuses = Counter((o["side"], o["status"], o["reason"]) for o in orders)
    filled = {o["side"] for o in orders if o["status"] == "filled"}
    assert filled == {"BUY", "SELL"}, f"a policy that never buys or never sells makes this test vacuous: {statuses}"
