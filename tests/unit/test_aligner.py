"""Hour alignment in event time: complete hours, degraded after the timeout, out of order, duplicates and
conflicts, and a clock (first hour, frontier) that no single kline can move."""

from __future__ import annotations

import json

import pytest

from models.kline import HOUR_MS
from streaming.aligner import HourAligner, Rejection
from tests.streaming_fakes import SYMBOLS, T0, kline


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


def test_duplicates_conflicts_and_late_klines_are_rejected_with_a_reason() -> None:
    a = aligner(timeout_hours=1)
    for symbol in SYMBOLS:
        a.add(kline(symbol, 0))
    a.add(kline("BTCUSDT", 1))
    assert a.add(kline("BTCUSDT", 1)) == ("duplicate", f"BTCUSDT {T0 + HOUR_MS} is already pending", None)
    conflict = a.add(kline("BTCUSDT", 1, price=200.0))
    assert conflict is not None and conflict.code == "conflict" and conflict.accepted == kline("BTCUSDT", 1)
    a.release()
    again = a.add(kline("ETHUSDT", 0))
    assert again is not None and again.code == "duplicate"  # hour 0 was decided with this very kline
    changed = a.add(kline("ETHUSDT", 0, volume=99.0))
    assert changed is not None and changed.code == "conflict" and changed.accepted == kline("ETHUSDT", 0)
    a.add(kline("BTCUSDT", 2))
    assert hours_of(a.release()) == [1]  # degraded: ETH and BNB missing
    late = a.add(kline("ETHUSDT", 1))
    assert late is not None and late.code == "late" and "after its hour was decided" in late.detail


def started(max_ahead_hours: int = 24, timeout_hours: int = 2) -> HourAligner:
    """An aligner that released hour 0 (its clock starts there)."""
    a = HourAligner(SYMBOLS, "BTCUSDT", timeout_hours=timeout_hours, max_ahead_hours=max_ahead_hours)
    for symbol in SYMBOLS:
        a.add(kline(symbol, 0))
    assert hours_of(a.release()) == [0]
    return a


def code(rejection: Rejection | None) -> str:
    return rejection.code if rejection is not None else ""


def test_a_clock_far_in_the_future_is_out_of_range() -> None:
    a = started()
    assert code(a.add(kline("BTCUSDT", 24 * 365))) == "out_of_range"


def test_a_kline_13_days_ahead_mid_stream_is_refused_and_the_real_klines_after_it_are_not_late() -> None:
    a = started(timeout_hours=1)
    assert code(a.add(kline("BTCUSDT", 13 * 24))) == "out_of_range"
    for hour in range(1, 6):
        assert [a.add(kline(s, hour)) for s in SYMBOLS] == [None] * 3
    released = a.release()
    assert hours_of(released) == [1, 2, 3, 4, 5] and not any(h.degraded for h in released)


def test_a_lone_traded_kline_ahead_does_not_time_hours_out() -> None:
    a = started(timeout_hours=2)
    a.add(kline("ETHUSDT", 1))  # BNB and BTC of hour 1 still to come
    assert a.add(kline("BTCUSDT", 20)) is None  # within max_ahead: held, but it moves no clock
    assert a.release() == [] and a.traded_latest == T0
    for symbol in ("BTCUSDT", "BNBUSDT"):
        a.add(kline(symbol, 1))
    assert hours_of(a.release()) == [1]  # complete, not timed out by the kline of hour 20


def test_the_clock_moves_when_a_majority_agrees_after_an_outage_of_every_symbol() -> None:
    a = started(timeout_hours=2)
    for symbol in ("ETHUSDT", "BTCUSDT"):  # hours 1-5 lost everywhere; two of three symbols agree on hour 6
        a.add(kline(symbol, 6))
    a.add(kline("BTCUSDT", 7))
    a.add(kline("BTCUSDT", 8))
    released = a.release()
    assert hours_of(released) == [1, 2, 3, 4, 5, 6]
    assert [h.klines for h in released[:5]] == [()] * 5 and released[5].missing == ("BNBUSDT",)


def test_a_backlog_longer_than_max_ahead_in_one_batch_is_accepted_hour_after_hour() -> None:
    a = started(max_ahead_hours=48)
    backlog = [kline(symbol, hour) for hour in range(1, 201) for symbol in SYMBOLS]  # 200 h > 48 h ahead
    assert [a.add(k) for k in backlog] == [None] * len(backlog)
    assert hours_of(a.release()) == list(range(1, 201))
    assert code(a.add(kline("BTCUSDT", 200 + 49))) == "out_of_range"  # the clock moved with the data


@pytest.mark.parametrize("outlier_hour", [-24 * 365 * 7, 24 * 365 * 7])  # 2016 and 2030
def test_a_new_stream_starts_where_a_majority_agrees_never_at_the_first_record(outlier_hour: int) -> None:
    a = aligner()
    outlier = kline("BTCUSDT", outlier_hour)
    assert a.add(outlier) is None  # held: nothing decides the clock alone
    assert a.release() == [] and a.next_hour is None
    for hour in range(3):
        for symbol in SYMBOLS:
            a.add(kline(symbol, hour))
    assert hours_of(a.release()) == [0, 1, 2]
    (evicted,) = a.take_evicted()
    assert evicted.held.kline == outlier
    assert evicted.rejection.code == ("before_start" if outlier_hour < 0 else "out_of_range")
    assert a.first_hour == T0


def test_the_klines_that_came_just_before_the_first_agreed_hour_are_kept() -> None:
    a = aligner()
    a.add(kline("BNBUSDT", 0))  # shuffled arrival: hour 1 agrees first, hour 0 has one kline so far
    for symbol in ("BTCUSDT", "ETHUSDT"):
        a.add(kline(symbol, 1))
    a.release()
    assert a.first_hour == T0 and a.take_evicted() == []
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert a.add(kline(symbol, 0)) is None
    a.add(kline("BNBUSDT", 1))
    assert hours_of(a.release()) == [0, 1]


@pytest.mark.parametrize(("outlier_hour", "expected"), [(-24 * 365 * 7, "before_start"), (24 * 365, "out_of_range")])
def test_a_configured_start_refuses_an_outlier_at_once(outlier_hour: int, expected: str) -> None:
    a = HourAligner(SYMBOLS, "BTCUSDT", start_hour=T0)
    assert code(a.add(kline("BTCUSDT", outlier_hour))) == expected
    for symbol in SYMBOLS:
        a.add(kline(symbol, 0))
    assert hours_of(a.release()) == [0]


def test_the_clock_survives_a_restore() -> None:
    a = started(max_ahead_hours=48)
    restored = HourAligner(SYMBOLS, "BTCUSDT", max_ahead_hours=48).restore(json.loads(json.dumps(a.state())))
    assert (restored.first_hour, restored.next_hour, restored.frontier) == (T0, T0 + HOUR_MS, T0)
    assert code(restored.add(kline("ETHUSDT", 49))) == "out_of_range"
    assert code(restored.add(kline("ETHUSDT", 0))) == "duplicate"
    assert code(restored.add(kline("ETHUSDT", 0, price=1.0))) == "conflict"


def test_a_state_written_before_the_trusted_clock_still_restores() -> None:
    pending = [kline("BTCUSDT", 1).to_json("aligner").decode()]
    old = {"next_hour": T0 + HOUR_MS, "traded_latest": T0, "frontier": T0, "pending": pending,
           "released": {str(T0): list(SYMBOLS)}}  # fmt: skip
    a = HourAligner(SYMBOLS, "BTCUSDT").restore(old)
    assert code(a.add(kline("ETHUSDT", 0, price=1.0))) == "duplicate"  # no values kept: cannot tell a conflict
    for symbol in ("ETHUSDT", "BNBUSDT"):
        a.add(kline(symbol, 1))
    assert hours_of(a.release()) == [1]


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
