"""The kline contract: one parser at the edge, a lossless Kafka encoding, row-level rules."""

from __future__ import annotations

import json

import pytest

from models.errors import KlineParseError
from models.kline import Kline, check_kline, klines_to_frame, parse_record, parse_rest_kline

REST_ROW = [
    1672531200000,
    "16541.77000000",
    "16545.70000000",
    "16508.39000000",
    "16529.67000000",
    "4364.83570000",
    1672534799999,
    "72146591.66447870",
    96212,
    "2211.54000000",
    "36556040.05765000",
    "0",
]


def test_rest_row_parses_into_the_contract() -> None:
    kline = parse_rest_kline(REST_ROW, "btcusdt")
    assert kline.symbol == "BTCUSDT"
    assert kline.open_time == 1672531200000
    assert kline.close == pytest.approx(16529.67)
    assert kline.count == 96212
    assert kline.event_time == 1672534799999
    assert check_kline(kline) == []


def test_kafka_json_round_trip_is_lossless_and_versioned() -> None:
    kline = parse_rest_kline(REST_ROW, "BTCUSDT")
    value = kline.to_json(source="test")
    payload = json.loads(value)
    assert payload["schema_version"] == 1 and payload["source"] == "test"
    assert parse_record(value) == kline


def test_optional_columns_stay_unknown_and_event_time_is_derived() -> None:
    kline = parse_rest_kline(REST_ROW[:6], "LTCUSDT")
    assert kline.close_time is None and kline.count is None and kline.taker_buy_volume is None
    assert kline.event_time == kline.open_time + 3_599_999
    frame = klines_to_frame([kline])
    assert frame["count"].isna().all() and frame["taker_buy_volume"].isna().all()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1,2,3]", "not a JSON object"),
        (b'{"schema_version": 99}', "schema_version"),
        (json.dumps({"schema_version": 1, "symbol": "BTCUSDT"}).encode(), "lacks field"),
        (
            json.dumps(
                {
                    "schema_version": 1,
                    "symbol": "BTCUSDT",
                    "interval": "1h",
                    "open_time": "x",
                    "open": 1,
                    "high": 1,
                    "low": 1,
                    "close": 1,
                    "volume": 1,
                }
            ).encode(),
            "open_time",
        ),
        (
            json.dumps(
                {
                    "schema_version": 1,
                    "symbol": "BTC/USDT",
                    "interval": "1h",
                    "open_time": 0,
                    "open": 1,
                    "high": 1,
                    "low": 1,
                    "close": 1,
                    "volume": 1,
                }
            ).encode(),
            "symbol",
        ),
    ],
)
def test_malformed_records_raise_a_specific_parse_error(value: bytes, reason: str) -> None:
    with pytest.raises(KlineParseError, match=reason):
        parse_record(value)


def test_non_finite_numbers_are_rejected() -> None:
    row = list(REST_ROW)
    row[4] = "NaN"
    with pytest.raises(KlineParseError, match="close"):
        parse_rest_kline(row, "BTCUSDT")


def test_row_rules_name_what_is_wrong() -> None:
    bad = Kline("BTCUSDT", "1h", 1672531200001, open=10, high=9, low=11, close=10, volume=-1)
    problems = check_kline(bad)
    assert "open_time is not on the interval boundary" in problems
    assert "low <= open, close <= high violated" in problems
    assert "volume must be >= 0" in problems
