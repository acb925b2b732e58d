"""One micro-batch on the driver: judge, align, DLQ, trader, state — and a replay changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from adapters.kafka import DlqRecord
from models.kline import HOUR_MS, Kline
from streaming.batch_state import BatchStateStore
from streaming.dlq import RawRecord
from streaming.micro_batch import AlignerConfig, MicroBatchProcessor
from tests.unit.streaming_fakes import SYMBOLS, T0, RecordingTrader, kline


class ListDlq:
    def __init__(self) -> None:
        self.records: list[DlqRecord] = []

    def write(self, records: Sequence[DlqRecord]) -> int:
        self.records.extend(records)
        return len(records)


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
