"""Recorded Binance payloads (tests/fixtures/binance, sources in its README) go through the same edge
parsers as live data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.errors import KlineParseError
from models.kline import Kline, check_kline, parse_rest_kline, parse_ws_kline

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance"


def _load(name: str) -> object:
    return json.loads((FIXTURES / name).read_text())


def _consistent(kline: Kline) -> bool:
    """low <= open, close <= high and volume >= 0 (check_kline also checks the 1h boundary, which
    these 1m / 5m recordings do not have)."""
    return kline.low <= min(kline.open, kline.close) <= max(kline.open, kline.close) <= kline.high and kline.volume >= 0


def test_recorded_rest_klines_parse_into_valid_closed_klines_in_order() -> None:
    rows = _load("rest_klines_btcusdt_1m_nautilus.json")
    assert isinstance(rows, list)
    klines = [parse_rest_kline(row, "BTCUSDT", "1m") for row in rows]

    assert [k.open_time for k in klines] == sorted(k.open_time for k in klines)
    first = klines[0]
    assert (first.open_time, first.open, first.high, first.low, first.close) == (
        1634943780000,
        60685.22,
        60729.84,
        60670.90,
        60719.27,
    )
    assert (first.close_time, first.count, first.quote_volume) == (1634943839999, 617, 1313200.01340410)
    assert all(_consistent(k) for k in klines)
    assert all(k.close_time == k.open_time + 59_999 for k in klines)


def test_api_docs_rest_example_ignores_the_twelfth_field() -> None:
    (row,) = _load("rest_klines_api_docs_example.json")  # type: ignore[misc]
    kline = parse_rest_kline(row, "BNBBTC", "1w")
    assert kline.taker_buy_quote_volume == 28.46694368
    assert kline.volume == 148976.11427815


@pytest.mark.parametrize("name", ["ws_kline_btcusdt_5m_open_wscat.json", "ws_kline_api_docs_example.json"])
def test_recorded_stream_messages_parse_and_report_not_closed(name: str) -> None:
    message = _load(name)
    assert isinstance(message, dict)
    kline, closed = parse_ws_kline(message)

    assert closed is False
    assert kline.symbol == message["s"]
    assert kline.open_time == message["k"]["t"]
    assert kline.event_time == message["k"]["T"]
    assert kline.count == message["k"]["n"]


def test_live_recording_is_consistent_but_the_docs_example_is_caught_by_the_row_rules() -> None:
    live, _ = parse_ws_kline(_load("ws_kline_btcusdt_5m_open_wscat.json"))  # type: ignore[arg-type]
    docs, _ = parse_ws_kline(_load("ws_kline_api_docs_example.json"))  # type: ignore[arg-type]
    assert _consistent(live)
    # the documentation's illustrative numbers have low (0.0015) above open (0.0010)
    assert "low <= open, close <= high violated" in check_kline(docs)


def test_combined_stream_wrapper_and_closed_flag_are_understood() -> None:
    data = _load("ws_kline_btcusdt_5m_open_wscat.json")
    assert isinstance(data, dict)
    closed_copy = {**data, "k": {**data["k"], "x": True}}  # derived: the recorded message with x set
    kline, closed = parse_ws_kline({"stream": "btcusdt@kline_5m", "data": closed_copy})
    assert closed is True
    assert kline.close == 46673.53


def test_a_truncated_recorded_message_is_rejected_with_the_missing_field() -> None:
    data = _load("ws_kline_api_docs_example.json")
    assert isinstance(data, dict)
    broken = {**data, "k": {key: v for key, v in data["k"].items() if key != "o"}}
    with pytest.raises(KlineParseError, match="'o'"):
        parse_ws_kline(broken)
