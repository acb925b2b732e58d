"""A kline the trader cannot use (a field its features need is null, a count of -100) or an hour whose Q-values
are not finite is quarantined: the hour is decided degraded, as a hold, with an alert — never an exception."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.kline import HOUR_MS, Kline
from streaming.brokers import PaperBroker
from streaming.online_learner import OnlineConfig
from streaming.online_trader import OnlineTrader, TraderConfig
from streaming.risk import RiskLimits
from tests.streaming_fakes import ListAlerts
from tests.trader_fakes import (
    MemoryCheckpoints,
    MemorySink,
    StaticModelSource,
    hourly_batches,
    make_policy,
    market,
)
from tests.trader_fakes import to_klines as frame_klines

WARMUP = 33
HOURS = 60
LOOSE = RiskLimits(max_position_units=1e9, max_order_notional=1e12, daily_loss_limit=1e12)


@pytest.fixture(scope="module")
def data() -> tuple[object, list[Kline]]:
    torch.set_num_threads(1)
    frame = market(WARMUP + HOURS, seed=3)
    return frame, frame_klines(frame)


def trade(policy: object, klines: list[Kline], alerts: ListAlerts | None = None,
          store: MemoryCheckpoints | None = None) -> tuple[OnlineTrader, MemorySink]:  # fmt: skip
    sink = MemorySink()
    source = StaticModelSource({"1": policy}, "1")  # type: ignore[dict-item]
    config = TraderConfig(fee_rate=0.0, online=OnlineConfig(enabled=False))
    store = store or MemoryCheckpoints()
    trader = OnlineTrader.start(config, source, PaperBroker(0.0, 0.0), sink, store, LOOSE, alerts=alerts)
    for batch_id, batch in enumerate(hourly_batches(klines, 4)):
        trader.process_batch(batch_id, batch)
    return trader, sink


def decisions(sink: MemorySink) -> dict[int, tuple[int, bool, bool]]:
    return {d.open_time: (d.action, d.degraded, d.tradable) for d in sink.decisions.values()}


def test_the_trader_names_the_optional_fields_its_model_needs(data) -> None:
    frame, _ = data
    trader, _ = trade(make_policy(frame, seed=8), [])
    assert trader.required_fields() == {s: ("count", "taker_buy_volume") for s in trader.policy.spec.symbols}  # type: ignore[union-attr]


@pytest.mark.parametrize("change", [{"count": None}, {"count": -100}, {"volume": float("inf")}])
def test_a_kline_the_model_cannot_use_is_quarantined_like_a_missing_one(data, change: dict[str, object]) -> None:
    frame, klines = data
    policy = make_policy(frame, seed=8)
    hour = int(frame["open_time"].min()) + (WARMUP + 20) * HOUR_MS
    bad = [replace(k, **change) if (k.symbol, k.open_time) == ("BTCUSDT", hour) else k for k in klines]
    missing = [k for k in klines if (k.symbol, k.open_time) != ("BTCUSDT", hour)]
    alerts = ListAlerts()
    _, quarantined = trade(policy, bad, alerts)
    _, without = trade(policy, missing)
    _, clean = trade(policy, klines)
    got = decisions(quarantined)
    assert got[hour] == (0, True, False)  # degraded, a hold, not tradable
    assert got == decisions(without)  # the bad kline counts as missing, nothing more
    assert set(got) == set(decisions(clean))  # every hour decided, none lost
    (alert,) = alerts.alerts
    assert alert.kind == "quarantined_hour" and alert.details["open_time"] == hour
    assert alert.details["symbol"] == "BTCUSDT" and alert.details["reason"]


def test_a_quarantined_context_kline_makes_its_hour_a_degraded_hold(data) -> None:
    frame, klines = data
    hour = int(frame["open_time"].min()) + (WARMUP + 5) * HOUR_MS
    bad = [replace(k, count=None) if (k.symbol, k.open_time) == ("ETHUSDT", hour) else k for k in klines]
    alerts = ListAlerts()
    _, sink = trade(make_policy(frame, seed=8), bad, alerts)
    assert decisions(sink)[hour] == (0, True, False) and [a.kind for a in alerts.alerts] == ["quarantined_hour"]


def test_non_finite_q_values_quarantine_the_hour(data, monkeypatch: pytest.MonkeyPatch) -> None:
    frame, klines = data
    hour = int(frame["open_time"].min()) + (WARMUP + 10) * HOUR_MS
    policy = make_policy(frame, seed=8)
    store, alerts = MemoryCheckpoints(), ListAlerts()
    real_q = __import__("streaming.online_learner", fromlist=["OnlineLearner"]).OnlineLearner.q_values

    def poisoned(self: object, hour_number: int, account: np.ndarray) -> np.ndarray:
        q = real_q(self, hour_number, account)
        return np.full_like(q, np.nan) if hour_number == hour // HOUR_MS else q

    monkeypatch.setattr("streaming.online_learner.OnlineLearner.q_values", poisoned)
    trader, sink = trade(policy, klines, alerts, store)
    assert decisions(sink)[hour] == (0, True, False)
    assert [a.details["symbol"] for a in alerts.alerts] == [None]
    restored = OnlineTrader.start(trader.config, trader.model_source, PaperBroker(0.0, 0.0), MemorySink(), store,
                                  LOOSE)  # fmt: skip
    assert restored.quarantined == trader.quarantined and hour in restored.quarantined  # in the checkpoint
