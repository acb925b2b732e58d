"""Kline files: header CSVs with empty optional columns, and Binance Vision dumps (CSV / ZIP, no header,
microsecond timestamps in newer dumps)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from adapters.kline_files import read_kline_csv, read_kline_dir, read_vision_dump
from models.errors import KlineParseError
from models.synthetic import random_walk_klines
from tests.market_data import ms

VISION_ROWS_MS = (
    "1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68108,1704070799999,53957248.9,47134,682.57581,28957416.8,0\n"
    "1704070800000,42475.23,42775.00,42431.65,42613.56,1196.37856,1704074399999,50984893.4,44380,712.46524,30368649.3,0\n"
)
VISION_ROWS_US = (
    "1735689600000000,93576.00,94509.42,93489.03,94401.14,1050.1,"
    "1735693199999999,98800000.1,150000,500.5,47100000.2,0\n"
)


def test_header_csv_keeps_empty_optional_columns_empty(tmp_path: Path) -> None:
    path = tmp_path / "BNBUSDT.csv"
    path.write_text(
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume\n"
        "1609459200000,37.3596,37.4423,36.9636,37.3764,95113.826,,,,,\n"
    )
    frame = read_kline_csv(path)
    row = frame.iloc[0]
    assert row["symbol"] == "BNBUSDT" and row["open"] == 37.3596
    assert pd.isna(row["close_time"]) and pd.isna(row["count"]) and pd.isna(row["quote_volume"])


def test_vision_csv_without_header_is_read_in_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1h-2024-01.csv"
    path.write_text(VISION_ROWS_MS)
    frame = read_vision_dump(path)
    assert list(frame["open_time"]) == [1704067200000, 1704070800000]
    assert frame["close_time"].iloc[0] == 1704070799999 and frame["count"].iloc[0] == 47134
    assert set(frame["symbol"]) == {"BTCUSDT"} and "ignore" not in frame.columns


def test_vision_zip_with_microsecond_timestamps_becomes_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1h-2025-01.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("BTCUSDT-1h-2025-01.csv", VISION_ROWS_US)
    frame = read_vision_dump(path)
    assert frame["open_time"].iloc[0] == ms("2025-01-01T00:00")
    assert frame["close_time"].iloc[0] == ms("2025-01-01T00:00") + 3_599_999


def test_a_folder_mixing_header_csv_and_dumps_is_read_for_a_range(tmp_path: Path) -> None:
    random_walk_klines(("BTCUSDT",), ms("2023-12-31T20:00"), 4).drop(columns=["symbol", "interval"]).to_csv(
        tmp_path / "BTCUSDT.csv", index=False
    )
    (tmp_path / "BTCUSDT-1h-2024-01.csv").write_text(VISION_ROWS_MS)
    (tmp_path / "BTCUSDT-1h-2025-01.csv").write_text("not,a,kline\n")  # outside the range: never opened
    frame = read_kline_dir(tmp_path, "BTCUSDT", ms("2023-12-31T22:00"), ms("2024-01-01T01:00"))
    assert list(frame["open_time"]) == [ms("2023-12-31T22:00"), ms("2023-12-31T23:00"), ms("2024-01-01T00:00")]


def test_missing_files_and_bad_dumps_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ETHUSDT\.csv"):
        read_kline_dir(tmp_path, "ETHUSDT")
    bad = tmp_path / "ETHUSDT-1h-2024-01.csv"
    bad.write_text("1704067200000,1,2,0.5,1.5,10,,,,,,0\n")
    with pytest.raises(KlineParseError, match="Vision"):
        read_vision_dump(bad)
