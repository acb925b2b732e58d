"""Hour alignment in event time: complete hours, degraded after the timeout, out of order, duplicates."""

from __future__ import annotations

import json

from models.kline import HOUR_MS
from streaming.aligner import HourAligner
from tests.unit.streaming_fakes import SYMBOLS, T0, kline


def aligner(timeout_hours: int = 2) -> HourAligner:
    return HourAligner(SYMBOLS, "BTCUSDT", timeout_hours=timeout_hours)


def hours_of(released: list) -> list[int]:
    return [(h.open_time - T0) // HOUR_MS for h in released]


def test_a_complete_hour_is_released_with_every_symbol_in_symbol_order() -> None:
    a = aligner()
    for symbol in reversed(SYMBOLS):
        assert a.add(kline(symbol, 0)) is None
    (hour,) = a.release()
    assert hour.open_time == T0 and not hour.degraded
    assert [k.symbol for k in hour.klines] == list(SYMBOLS)


def test_an_incomplete_hour_waits_until_the_traded_symbol_is_timeout_hours_ahead() -> None:
    a = aligner(timeout_hours=2)
    a.add(kline("BTCUSDT", 0))
    a.add(kline("ETHUSDT", 0))  # BNBUSDT never comes for hour 0
    assert a.release() == []
    a.add(kline("BTCUSDT", 1))
    assert a.release() == []  # traded symbol only 1 hour ahead
    a.add(kline("BTCUSDT", 2))
    released = a.release()
    assert hours_of(released) == [0]
    assert released[0].degraded and released[0].missing == ("BNBUSDT",)
    assert [k.symbol for k in released[0].klines] == ["BTCUSDT", "ETHUSDT"]


def test_other_symbols_running_ahead_do_not_time_an_hour_out() -> None:
    a = aligner(timeout_hours=1)
    a.add(kline("BTCUSDT", 0))
    for hour in range(0, 10):
        a.add(kline("ETHUSDT", hour))
        a.add(kline("BNBUSDT", hour))
    assert hours_of(a.release()) == [0]  # hour 0 complete; hour 1 waits for the traded symbol
    a.add(kline("BTCUSDT", 2))
    released = a.release()
    assert hours_of(released) == [1, 2]
    assert released[0].missing == ("BTCUSDT",) and not released[1].degraded


def test_out_of_order_klines_are_released_in_hour_order() -> None:
    a = aligner()
    order = [(s, h) for h in (3, 1, 0, 2) for s in SYMBOLS]
    for symbol, hour in order:
        assert a.add(kline(symbol, hour)) is None
    assert hours_of(a.release()) == [0, 1, 2, 3]


def test_duplicates_and_late_klines_are_rejected_with_a_reason() -> None:
    a = aligner(timeout_hours=1)
    for symbol in SYMBOLS:
        a.add(kline(symbol, 0))
    a.add(kline("BTCUSDT", 1))
    code, detail = a.add(kline("BTCUSDT", 1, price=200.0)) or ("", "")
    assert code == "duplicate" and "already pending" in detail
    a.release()
    code, _ = a.add(kline("ETHUSDT", 0)) or ("", "")
    assert code == "duplicate"  # hour 0 was decided with ETHUSDT in it
    a.add(kline("BTCUSDT", 2))
    assert hours_of(a.release()) == [1]  # degraded: ETH and BNB missing
    code, detail = a.add(kline("ETHUSDT", 1)) or ("", "")
    assert code == "late" and "after its hour was decided" in detail


def test_a_clock_far_in_the_future_is_out_of_range() -> None:
    a = aligner()
    for symbol in SYMBOLS:
        a.add(kline(symbol, 0))
    a.release()
    code, _ = a.add(kline("BTCUSDT", 24 * 365)) or ("", "")
    assert code == "out_of_range"


def test_a_backlog_longer_than_max_ahead_in_one_batch_is_accepted_hour_after_hour() -> None:
    a = HourAligner(SYMBOLS, "BTCUSDT", timeout_hours=2, max_ahead_hours=48)
    for symbol in SYMBOLS:
        a.add(kline(symbol, 0))
    a.release()
    backlog = [kline(symbol, hour) for hour in range(1, 201) for symbol in SYMBOLS]  # 200 h > 48 h ahead
    assert [a.add(k) for k in backlog] == [None] * len(backlog)
    assert hours_of(a.release()) == list(range(1, 201))
    code, _ = a.add(kline("BTCUSDT", 201 + 49)) or ("", "")  # next hour to release: 201
    assert code == "out_of_range"  # the frontier moved with the data, the guard with it


def test_the_frontier_survives_a_restore_and_guards_the_first_batch_too() -> None:
    a = HourAligner(SYMBOLS, "BTCUSDT", max_ahead_hours=48)
    assert a.add(kline("BTCUSDT", 0)) is None
    code, _ = a.add(kline("ETHUSDT", 49)) or ("", "")
    assert code == "out_of_range"  # nothing released yet: guarded by the latest accepted hour
    restored = HourAligner(SYMBOLS, "BTCUSDT", max_ahead_hours=48).restore(json.loads(json.dumps(a.state())))
    assert restored.frontier == a.frontier == T0
    code, _ = restored.add(kline("ETHUSDT", 49)) or ("", "")
    assert code == "out_of_range"


def test_an_hour_without_any_kline_is_released_empty_and_degraded() -> None:
    a = aligner(timeout_hours=1)
    for symbol in SYMBOLS:
        a.add(kline(symbol, 0))
        a.add(kline(symbol, 2))
    released = a.release()
    assert hours_of(released) == [0, 1, 2]
    assert released[1].klines == () and released[1].missing == SYMBOLS
    assert a.empty_hours == 1


def test_state_round_trip_gives_the_same_releases() -> None:
    first = aligner()
    first.add(kline("BTCUSDT", 0))
    first.add(kline("ETHUSDT", 0))
    first.release()
    snapshot = json.loads(json.dumps(first.state()))
    second = aligner().restore(snapshot)
    for a in (first, second):
        a.add(kline("BNBUSDT", 0))
        for symbol in SYMBOLS:
            a.add(kline(symbol, 1))
    assert first.release() == second.release()
    assert first.state() == second.state()
