"""The online replay (streaming/replay.py, what the walk-forward's ``--online`` runs) is the stream: the real
live path (Kafka → Spark job → online trader → Cassandra) over January 2023 of the real klines makes the same
decisions, hour for hour, as the replay of the same saved policy with the same seed, with online learning off
and on; with learning on, the same number of online updates and the same final weights."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

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
from tests.integration.test_live_parity import DEC_1, FEB_1, JAN_1, POLICY_SEED, SYMBOLS, WARMUP

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ONLINE_SEED = 0  # the stream's (OnlineConfig's default): klinestream stream has no setting for it


def _stream(settings: Settings, spark: Any, model_dir: Path, frame: Any, online: bool, tmp: Path) -> dict[str, Any]:
    """Run the live path over ``frame`` once; its decision rows, the trader's online config and final weights."""
    from klinestream.commands.live import build_trader
    from streaming.replay import weights
    from streaming.spark_job import StreamOptions, run_stream
    from tests.trader_fakes import to_klines

    changes: dict[str, object] = {"cassandra_keyspace": new_keyspace("test_replay"), "symbols": SYMBOLS,
                                  "traded_symbol": TRADED, "monitor_enabled": False}  # fmt: skip
    changes |= LOOSE_LIMITS
    with live_topics(settings, **changes) as live, keyspace_dropped_after(live):
        seed(live, sorted(to_klines(frame), key=lambda k: (k.open_time, k.symbol)))  # as the ingestor does
        group = build_trader(live, model_dir, online=online)
        try:
            options = StreamOptions(name=f"replay-{uuid.uuid4().hex[:6]}", available_now=True,
                                    max_offsets_per_trigger=1000, checkpoint_dir=tmp / "checkpoint")  # fmt: skip
            run_stream(spark, live, group, options)
            trader = group.champion
            return {"decisions": trader_rows(group, "decisions"), "config": trader.config,
                    "weights": weights(trader) if online else None, "updates": trader.online_updates}  # fmt: skip
        finally:
            close_trader(group)


@pytest.mark.parametrize("online", [False, True], ids=["learning-off", "learning-on"])
def test_the_replay_decides_as_the_stream_for_the_same_model_month_and_seed(
    settings: Settings, stack: Any, spark: Any, shared_klines_dir: Path, tmp_path: Path, online: bool
) -> None:
    from adapters.kline_files import read_kline_dirs
    from models.time_range import TimeRange
    from streaming.model_source import DirectoryModelSource
    from streaming.replay import ReplayConfig, replay, weights
    from tests.trader_fakes import make_policy

    stack.require("kafka", "cassandra", "spark")
    torch.set_num_threads(1)  # both run in this process: the same float arithmetic
    december = read_kline_dirs(shared_klines_dir, SYMBOLS, DEC_1, JAN_1)
    policy = make_policy(december, seed=POLICY_SEED)
    model_dir = Path(policy.save(tmp_path / "models" / "1"))
    frame = read_kline_dirs(shared_klines_dir, SYMBOLS, JAN_1 - WARMUP * HOUR_MS, FEB_1)

    streamed = _stream(settings, spark, model_dir, frame, online, tmp_path)

    config = streamed["config"]
    assert config.online.enabled is online and config.online.seed == ONLINE_SEED
    replay_config = ReplayConfig(online=online, seed=ONLINE_SEED, fee_rate=config.fee_rate,
                                 slippage_bps=config.slippage_bps, accounting=config.accounting,
                                 online_config=config.online, trader_id="replay")  # fmt: skip
    replayed = replay(DirectoryModelSource({"1": model_dir}, "1"), frame, TimeRange(JAN_1, FEB_1, "january-2023"),
                      replay_config)  # fmt: skip

    rows = {d["open_time"]: d for d in streamed["decisions"]}
    assert min(rows) == JAN_1 and sorted(rows) == list(range(JAN_1, FEB_1, HOUR_MS))
    mine = {d.open_time: d for d in replayed.decisions}
    assert sorted(mine) == sorted(rows)
    differ = {h: (rows[h]["action"], d.action) for h, d in mine.items() if rows[h]["action"] != d.action}
    assert not differ, f"stream vs replay actions (stream, replay) differ at {len(differ)} hours: {differ}"
    assert all(rows[h]["explored"] == d.explored and rows[h]["online_updates"] == d.online_updates
               for h, d in mine.items())  # fmt: skip
    assert len({d.action for d in replayed.decisions}) > 1, "a policy that only holds makes this test vacuous"
    if not online:
        assert replayed.online_updates == streamed["updates"] == 0
        return
    assert replayed.online_updates == streamed["updates"] > 0
    assert any(d.explored for d in replayed.decisions), "no exploration: the seeds were not exercised"
    theirs, ours = streamed["weights"], weights(replayed.trader)
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) for k in ours), "the final weights differ"
