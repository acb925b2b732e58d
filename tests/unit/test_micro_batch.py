"""One micro-batch on the driver: judge, align, DLQ, trader, state — a replay changes nothing, a batch that
keeps failing is set aside with an alert, and a run that keeps nothing does not report success."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from models.errors import TemporaryError
from models.kline import HOUR_MS, Kline
from streaming.batch_state import BatchStateStore
from streaming.dlq import RawRecord
from streaming.micro_batch import AlignerConfig, EmptyRunError, MicroBatchProcessor
from tests.streaming_fakes import SYMBOLS, T0, ListAlerts, ListDlq, RecordingTrader, kline


def records(items: Sequence[Kline | bytes], start_offset: int = 0) -> list[RawRecord]:
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Kline):
            out.append(RawRecord("klines.1h", 0, start_offset + i, item.symbol.encode(), item.to_json("t")))
        else:
            out.append(RawRecord("klines.1h", 0, start_offset + i, b"BTCUSDT", item))
    return out


def processor(tmp_path: Path, trader: RecordingTrader, dlq: ListDlq) -> MicroBatchProcessor:
    config = AlignerConfig(SYMBOLS, "BTCUSDT", timeout_hours=1)
    return MicroBatchProcessor(config, trader, dlq, BatchStateStore(tmp_path / "aligner"))


def test_good_klines_reach_the_trader_in_hour_order_and_bad_ones_the_dlq(tmp_path: Path) -> None:
    trader, dlq = RecordingTrader(), ListDlq()
    batch0: list[Kline | bytes] = [kline(s, h) for h in (1, 0) for s in SYMBOLS]
    batch0 += [b"garbage", kline("BTCUSDT", 0)]
    outcome = processor(tmp_path, trader, dlq).process(0, records(batch0))
    assert [(k.open_time - T0) // HOUR_MS for k in trader.klines()] == [0, 0, 0, 1, 1, 1]
    assert [r.reason.split(":")[0] for r in dlq.records] == ["not_json", "duplicate"]
    assert outcome.accepted == 7 and outcome.degraded_hours == []


def test_a_degraded_hour_is_passed_to_the_trader_as_degraded(tmp_path: Path) -> None:
    trader, dlq = RecordingTrader(), ListDlq()
    p = processor(tmp_path, trader, dlq)
    p.process(0, records([kline("BTCUSDT", 0), kline("ETHUSDT", 0)]))
    assert trader.batches == []
    p.process(1, records([kline("BTCUSDT", 1)], start_offset=2))
    (batch_id, klines, degraded) = trader.batches[0]
    assert batch_id == 1 and degraded == {T0}
    assert [k.symbol for k in klines] == ["BTCUSDT", "ETHUSDT"]


def test_replaying_a_batch_after_a_crash_reproduces_it_and_the_trader_skips_it(tmp_path: Path) -> None:
    trader, dlq = RecordingTrader(), ListDlq()
    p = processor(tmp_path, trader, dlq)
    p.process(0, records([kline(s, 0) for s in SYMBOLS] + [kline("BTCUSDT", 1)]))
    batch1 = records([kline("ETHUSDT", 1), kline("BNBUSDT", 1), kline("BTCUSDT", 2)], start_offset=4)
    first = p.process(1, batch1)
    # a new driver after a crash before Spark's commit of batch 1: same offsets, same batch id
    restarted = processor(tmp_path, trader, dlq)
    replay = restarted.process(1, batch1)
    assert replay.hours == first.hours
    assert replay.trader_result is False  # the trader had committed batch 1
    assert [b for b, _, _ in trader.batches] == [0, 1]
    restarted.process(2, records([kline(s, 2) for s in ("ETHUSDT", "BNBUSDT")], start_offset=7))
    assert [(k.open_time - T0) // HOUR_MS for k in trader.klines()] == [0] * 3 + [1] * 3 + [2] * 3


class FailingTrader(RecordingTrader):
    """Raises on one batch id, whatever its klines (a bug the record path cannot foresee)."""

    def __init__(self, failing_batch: int, error: Exception) -> None:
        super().__init__()
        self.failing_batch, self.error = failing_batch, error

    def process_batch(self, batch_id: int, klines: list[Kline], degraded: set[int] | None = None) -> bool:
        if batch_id == self.failing_batch:
            raise self.error
        return super().process_batch(batch_id, klines, degraded)


def codes(dlq: ListDlq) -> list[str]:
    return [r.reason.split(":")[0] for r in dlq.records]


def test_a_batch_that_keeps_failing_is_set_aside_after_max_attempts_and_the_stream_moves_on(tmp_path: Path) -> None:
    dlq, alerts = ListDlq(), ListAlerts()
    config = AlignerConfig(SYMBOLS, "BTCUSDT", timeout_hours=1, max_batch_attempts=2)
    trader = FailingTrader(1, ValueError("feature exploded"))

    def attempt() -> MicroBatchProcessor:  # a restarted job: a new processor on the same state folder
        return MicroBatchProcessor(config, trader, dlq, BatchStateStore(tmp_path / "aligner"), alerts)

    attempt().process(0, records([kline(s, 0) for s in SYMBOLS]))
    batch1 = records([kline(s, 1) for s in SYMBOLS], start_offset=3)
    for _ in range(2):
        with pytest.raises(ValueError, match="feature exploded"):
            attempt().process(1, batch1)
    assert alerts.alerts == [] and dlq.records == []
    outcome = attempt().process(1, batch1)
    assert outcome.set_aside and codes(dlq) == ["batch_failed"] * 3
    assert "failed 2 times" in dlq.records[0].reason and "feature exploded" in dlq.records[0].reason
    (alert,) = alerts.alerts
    assert alert.kind == "repeated_batch_failure" and alert.details["coordinates"] == [
        "klines.1h/0/3", "klines.1h/0/4", "klines.1h/0/5"]  # fmt: skip
    attempt().process(2, records([kline(s, 2) for s in SYMBOLS], start_offset=6))
    # hour 1 is gone (set aside), so hour 1 is released empty and degraded once hour 2 is there
    assert [(b, sorted(d)) for b, _, d in trader.batches] == [(0, []), (2, [T0 + HOUR_MS])]


def test_a_temporary_error_is_not_counted_as_a_failure(tmp_path: Path) -> None:
    dlq = ListDlq()
    config = AlignerConfig(SYMBOLS, "BTCUSDT", max_batch_attempts=1)
    trader = FailingTrader(0, TemporaryError("cassandra away"))
    for _ in range(3):
        p = MicroBatchProcessor(config, trader, dlq, BatchStateStore(tmp_path / "aligner"))
        with pytest.raises(TemporaryError):
            p.process(0, records([kline(s, 0) for s in SYMBOLS]))
    assert dlq.records == []


def test_a_conflicting_duplicate_is_dead_lettered_with_an_alert_carrying_both_versions(tmp_path: Path) -> None:
    trader, dlq, alerts = RecordingTrader(), ListDlq(), ListAlerts()
    p = MicroBatchProcessor(AlignerConfig(SYMBOLS, "BTCUSDT"), trader, dlq, BatchStateStore(tmp_path / "a"), alerts)
    real, other = kline("BTCUSDT", 0), kline("BTCUSDT", 0, price=98.0)
    p.process(0, records([real, *[kline(s, 0) for s in SYMBOLS[1:]], real, other]))
    assert codes(dlq) == ["duplicate", "conflict"]
    (alert,) = alerts.alerts
    assert alert.kind == "conflicting_duplicate" and alert.severity == "error"
    assert alert.details["accepted"] == real.to_dict() and alert.details["rejected"] == other.to_dict()
    assert trader.klines()[0] == real


def test_klines_held_before_the_start_reach_the_dlq_with_their_original_bytes(tmp_path: Path) -> None:
    trader, dlq, alerts = RecordingTrader(), ListDlq(), ListAlerts()
    p = MicroBatchProcessor(AlignerConfig(SYMBOLS, "BTCUSDT"), trader, dlq, BatchStateStore(tmp_path / "a"), alerts)
    outlier = kline("BTCUSDT", 24 * 365 * 7)  # dated 2030, the first record the stream ever sees
    p.process(0, records([outlier]))
    assert dlq.records == [] and trader.batches == []
    p.process(1, records([kline(s, 0) for s in SYMBOLS], start_offset=1))
    assert codes(dlq) == ["out_of_range"] and dlq.records[0].value == outlier.to_json("t")
    assert dlq.records[0].offset == 0 and alerts.kinds() == ["clock_outlier"]
    assert [k.open_time for k in trader.klines()] == [T0] * 3


def test_the_trader_decides_which_optional_fields_are_required(tmp_path: Path) -> None:
    class NeedsCount(RecordingTrader):
        def required_fields(self) -> dict[str, tuple[str, ...]]:
            return {"BTCUSDT": ("count",)}

    trader, dlq = NeedsCount(), ListDlq()
    p = MicroBatchProcessor(AlignerConfig(SYMBOLS, "BTCUSDT"), trader, dlq, BatchStateStore(tmp_path / "a"))
    p.process(0, records([kline("BTCUSDT", 0, count=None), *[kline(s, 0) for s in SYMBOLS]]))
    assert codes(dlq) == ["missing_feature"]
    assert [k.count for k in trader.klines() if k.symbol == "BTCUSDT"] == [7]


def test_a_run_that_keeps_nothing_alerts_and_does_not_report_success(tmp_path: Path) -> None:
    dlq, alerts = ListDlq(), ListAlerts()
    config = AlignerConfig(SYMBOLS, "BTCUSDT", empty_run_records=5)
    p = MicroBatchProcessor(config, RecordingTrader(), dlq, BatchStateStore(tmp_path / "a"), alerts)
    p.process(0, records([b"junk"] * 3))
    assert alerts.kinds() == []
    p.process(1, records([b"junk"] * 3, start_offset=3))
    assert alerts.kinds() == ["empty_run"]
    with pytest.raises(EmptyRunError, match="rejected all 6 records"):
        p.finish()
    fine = MicroBatchProcessor(config, RecordingTrader(), dlq, BatchStateStore(tmp_path / "b"), alerts)
    fine.process(0, records([b"junk", kline("BTCUSDT", 0)]))
    fine.finish()
