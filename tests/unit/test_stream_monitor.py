"""The stream's metrics and monitor on hand-made micro-batch outcomes: metric values, and one alert per event
(daily-loss stop, model swap, dead-letter burst, kill switch, stale data) however often it is seen."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adapters.kafka import DlqRecord
from models.kline import HOUR_MS, Kline
from models.records import DecisionRecord, OrderRecord, PositionRecord
from streaming.dlq import Accepted, RawRecord
from streaming.metrics import StreamMetrics
from streaming.micro_batch import BatchOutcome
from streaming.monitoring import KillSwitchState, MonitorConfig, MonitorSources, StreamMonitor
from streaming.online_trader import BatchResult
from tests.streaming_fakes import ListAlerts

T0 = 1_672_531_200_000  # 2023-01-01 00:00 UTC
TRADER = "paper-BTCUSDT"


def kline(hour: int, symbol: str = "BTCUSDT") -> Kline:
    open_time = T0 + hour * HOUR_MS
    return Kline(symbol, "1h", open_time, 100.0, 101.0, 99.0, 100.5, 10.0, open_time + HOUR_MS - 1)


def outcome(batch_id: int, hour: int, *, equity: float = 100_000.0, day_start: float = 100_000.0,
            orders: tuple[OrderRecord, ...] = (), swapped_from: str | None = None, dlq: int = 0,
            appended_ms: int | None = None, durable_at: float | None = None) -> BatchOutcome:  # fmt: skip
    k = kline(hour)
    record = RawRecord("klines.1h", 0, batch_id, b"BTCUSDT", b"{}", appended_ms or k.event_time + 1000)
    decision = DecisionRecord(TRADER, "BTCUSDT", k.open_time, "3", 1, 1, 0.0, 1.0, 0.0, 100.5, 0.0, False, 7, False,
                              True, batch_id, None, None, swapped_from)  # fmt: skip
    position = PositionRecord(TRADER, "BTCUSDT", k.open_time, "3", 1.0, equity - 100.5, equity, 99_000.0, 0.0, 0.1,
                              day_start, batch_id)  # fmt: skip
    durable = durable_at if durable_at is not None else (k.event_time + 3000) / 1000
    result = BatchResult(batch_id, False, "3", (decision,), orders, 7, (), swapped_from, durable, position, 0.25)
    letters = [DlqRecord("klines.1h", 0, 1000 + batch_id * 100 + i, None, b"x", "unparseable: bad json")
               for i in range(dlq)]  # fmt: skip
    return BatchOutcome(batch_id, 1 + dlq, 1, letters, trader_result=result, accepted_items=[Accepted(record, k)],
                        kept=1, seconds=0.2)  # fmt: skip


def order(hour: int, status: str, reason: str | None) -> OrderRecord:
    return OrderRecord(TRADER, "BTCUSDT", T0 + hour * HOUR_MS, f"ks-{hour}", "3", "BUY", 1.0, 100.5, status, reason,
                       1.0 if status == "filled" else 0.0, 100.5, 0.1, "paper", None, hour)  # fmt: skip


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def monitor(clock: list[float], **config: object) -> tuple[StreamMonitor, ListAlerts, CollectorRegistry]:
    registry, alerts = CollectorRegistry(), ListAlerts()
    settings = {"trader_id": TRADER, "topic": "klines.1h", "daily_loss_limit": 1000.0, "dead_letter_burst": 5,
                "dead_letter_burst_minutes": 10.0, **config}  # fmt: skip
    return StreamMonitor(MonitorConfig(**settings), StreamMetrics(registry), alerts,  # type: ignore[arg-type]
                         clock=lambda: clock[0]), alerts, registry  # fmt: skip


def test_metrics_are_the_values_of_the_batch_rows() -> None:
    mon, _, registry = monitor([0.0])
    mon.on_outcome(outcome(0, 40, equity=101_000.0, orders=(order(40, "filled", None),)))
    mon.on_outcome(outcome(1, 41, equity=99_990.0, orders=(order(41, "rejected", "max_position"),)))
    got = samples(registry)
    trader = (("symbol", "BTCUSDT"), ("trader_id", TRADER))
    assert got[("klinestream_equity", trader)] == 99_990.0
    assert abs(got[("klinestream_drawdown_ratio", trader)] - (1 - 99_990.0 / 101_000.0)) < 1e-12
    assert got[("klinestream_decisions_total", (("action", "buy"), *trader))] == 2
    rejected = (("reason", "max_position"), ("side", "BUY"), ("status", "rejected"), *trader)
    assert got[("klinestream_orders_total", rejected)] == 1
    assert got[("klinestream_risk_limit_trips_total", (("reason", "max_position"), *trader))] == 1
    assert got[("klinestream_model_info", (("model_version", "3"), ("trader_id", TRADER)))] == 1
    assert got[("klinestream_decision_latency_seconds_count", ())] == 2
    assert got[("klinestream_decision_latency_seconds_sum", ())] == 4.0  # durable 3 s after close, appended 1 s
    assert got[("klinestream_online_loss", (("trader_id", TRADER),))] == 0.25


def test_each_event_alerts_once_however_often_it_is_seen() -> None:
    clock = [T0 / 1000 + 41 * 3600.0]
    mon, alerts, registry = monitor(clock)
    for batch_id in (0, 1):  # the same day, loss past the limit twice; a refused buy too
        refused = order(40, "rejected", "daily_loss_limit")
        mon.on_outcome(outcome(batch_id, 40 + batch_id, equity=98_000.0, orders=(refused,)))
    mon.on_outcome(outcome(2, 42, swapped_from="2"))
    for batch_id in (3, 4, 5):  # 3 + 3 + 3 dead letters within the window: one burst
        mon.on_outcome(outcome(batch_id, 40 + batch_id, dlq=3))
    assert alerts.kinds() == ["daily_loss_stop", "model_swap", "dead_letter_burst"]
    assert samples(registry)[("klinestream_alerts_total", (("kind", "dead_letter_burst"),))] == 1
    clock[0] += 11 * 60  # the window empties: a new burst alerts again
    mon.on_outcome(outcome(6, 46))
    mon.on_outcome(outcome(7, 47, dlq=6))
    assert alerts.kinds().count("dead_letter_burst") == 2


def test_the_poll_reports_lag_kill_switch_changes_and_stale_hours_once() -> None:
    clock = [(T0 + 2 * HOUR_MS) / 1000]
    switch = [KillSwitchState(False)]
    sources = MonitorSources(lambda: {0: 120}, lambda: {0: 100}, lambda: switch[0], lambda: {"ETHUSDT": T0 - 1})
    mon, alerts, registry = monitor(clock, stale_after_minutes=15.0)
    mon.sources = sources
    mon.on_outcome(outcome(0, 0))  # BTCUSDT hour 0 closed at T0 + 1 h
    mon.poll()
    assert samples(registry)[("klinestream_kafka_consumer_lag", (("partition", "0"), ("topic", "klines.1h")))] == 20
    assert alerts.kinds() == ["stale_data"]  # ETHUSDT's hour 0 is 1 h late; BTCUSDT's hour 1 closed just now
    switch[0] = KillSwitchState(True, "operator", 5)
    for _ in range(3):
        mon.poll()
    switch[0] = KillSwitchState(False, "operator", 6)
    clock[0] += 16 * 60  # now BTCUSDT's hour 1 is late too
    mon.poll()
    mon.poll()
    assert alerts.kinds() == ["stale_data", "kill_switch", "kill_switch", "stale_data"]
    assert samples(registry)[("klinestream_kill_switch", (("trader_id", TRADER),))] == 0
