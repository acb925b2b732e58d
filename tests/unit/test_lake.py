"""The kline lake: partition layout, atomic range replacement, idempotent reruns, pruned reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from adapters import lake
from models.kline import HOUR_MS
from models.synthetic import random_walk_klines
from tests.market_data import ms


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_partitions_follow_the_layout_symbol_interval_date(tmp_path: Path) -> None:
    frame = random_walk_klines(("BTCUSDT",), ms("2022-01-01T22:00"), 4)
    lake.write_range(tmp_path, "raw", frame, ms("2022-01-01T22:00"), ms("2022-01-02T02:00"))
    assert sorted(_files(tmp_path)) == [
        "raw/symbol=BTCUSDT/interval=1h/date=2022-01-01/part.parquet",
        "raw/symbol=BTCUSDT/interval=1h/date=2022-01-02/part.parquet",
    ]


def test_read_range_returns_exactly_what_was_written_with_contract_dtypes(tmp_path: Path) -> None:
    market = random_walk_klines(("BTCUSDT", "ETHUSDT"), ms("2022-01-01T00:00"), 72)
    market.loc[market["symbol"] == "ETHUSDT", ["quote_volume", "count"]] = None  # optional columns may be empty
    start, end = ms("2022-01-01T00:00"), ms("2022-01-04T00:00")
    lake.write_range(tmp_path, "raw", market, start, end)

    got = lake.read_range(tmp_path, "raw", ["BTCUSDT", "ETHUSDT"], start, end)
    pd.testing.assert_frame_equal(got, market)
    only_eth_day2 = lake.read_range(tmp_path, "raw", ["ETHUSDT"], ms("2022-01-02T05:00"), ms("2022-01-02T07:00"))
    assert list(only_eth_day2["open_time"]) == [ms("2022-01-02T05:00"), ms("2022-01-02T06:00")]
    assert set(only_eth_day2["symbol"]) == {"ETHUSDT"}


def test_rewriting_the_same_range_changes_no_byte_and_duplicates_no_row(tmp_path: Path) -> None:
    frame = random_walk_klines(("BTCUSDT",), ms("2022-01-01T00:00"), 48)
    start, end = ms("2022-01-01T00:00"), ms("2022-01-03T00:00")
    lake.write_range(tmp_path, "raw", frame, start, end)
    before = _files(tmp_path)
    lake.write_range(tmp_path, "raw", frame, start, end)
    assert _files(tmp_path) == before
    assert len(lake.read_range(tmp_path, "raw", ["BTCUSDT"], start, end)) == 48


def test_an_overlapping_range_replaces_only_its_hours(tmp_path: Path) -> None:
    first = random_walk_klines(("BTCUSDT",), ms("2022-01-01T00:00"), 48)
    lake.write_range(tmp_path, "raw", first, ms("2022-01-01T00:00"), ms("2022-01-03T00:00"))
    revised = first[(first["open_time"] >= ms("2022-01-01T20:00")) & (first["open_time"] < ms("2022-01-02T04:00"))]
    revised = revised.assign(close=revised["close"] + 1.0, high=revised["high"] + 1.0)
    lake.write_range(tmp_path, "raw", revised, ms("2022-01-01T20:00"), ms("2022-01-02T04:00"))

    got = lake.read_range(tmp_path, "raw", ["BTCUSDT"], ms("2022-01-01T00:00"), ms("2022-01-03T00:00"))
    assert len(got) == 48 and got["open_time"].is_unique
    changed = got[got["close"] != first["close"].to_numpy()]
    assert list(changed["open_time"]) == list(revised["open_time"])


def test_an_hour_the_source_no_longer_has_disappears_on_rewrite(tmp_path: Path) -> None:
    frame = random_walk_klines(("BTCUSDT",), ms("2022-01-01T00:00"), 24)
    start, end = ms("2022-01-01T00:00"), ms("2022-01-02T00:00")
    lake.write_range(tmp_path, "raw", frame, start, end)
    lake.write_range(tmp_path, "raw", frame.iloc[1:], start, end)
    assert len(lake.read_range(tmp_path, "raw", ["BTCUSDT"], start, end)) == 23
    lake.write_range(tmp_path, "raw", frame.iloc[:0], start, end, symbols=["BTCUSDT"])
    assert lake.read_range(tmp_path, "raw", ["BTCUSDT"], start, end).empty
    assert _files(tmp_path) == {}


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    frame = random_walk_klines(("BTCUSDT",), ms("2022-01-01T00:00"), 30)
    lake.write_range(tmp_path, "validated", frame, ms("2022-01-01T00:00"), ms("2022-01-02T06:00"))
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []


def test_rows_outside_the_range_are_refused(tmp_path: Path) -> None:
    frame = random_walk_klines(("BTCUSDT",), ms("2022-01-01T00:00"), 3)
    with pytest.raises(ValueError, match="outside"):
        lake.write_range(tmp_path, "raw", frame, ms("2022-01-01T01:00"), ms("2022-01-01T03:00"))


def test_unknown_zone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="zone"):
        lake.read_range(tmp_path, "gold", ["BTCUSDT"], 0, HOUR_MS)  # type: ignore[arg-type]


def test_days_in_range_is_half_open() -> None:
    assert lake.days_in_range(ms("2022-01-01T23:00"), ms("2022-01-02T00:00")) == ["2022-01-01"]
    assert lake.days_in_range(ms("2022-01-01T23:00"), ms("2022-01-02T01:00")) == ["2022-01-01", "2022-01-02"]
    assert lake.days_in_range(5, 5) == []
