"""The Great Expectations kline suite: each rule fails on the klines that break it, names the rule, the
symbol and the hour; known exchange outages are reported as known gaps, not failures; publishing keeps a
failing day out of ``validated``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from adapters import lake
from models.errors import ValidationFailed
from models.synthetic import random_walk_klines
from pipelines.backfill import BackfillSummary, publish
from pipelines.validation import KlineValidator, KnownOutages, load_known_outages
from tests.market_data import ms

START, END = ms("2022-05-01T00:00"), ms("2022-05-04T00:00")
OUTAGE = ms("2022-05-02T03:00")
TRUNCATED = ms("2022-05-02T02:00")


@pytest.fixture(scope="module")
def validator() -> Iterator[KlineValidator]:
    outages = KnownOutages(version=99, missing=(("*", OUTAGE),), truncated=(("*", TRUNCATED),))
    yield KlineValidator(outages=outages)


def _klines() -> pd.DataFrame:
    return random_walk_klines(("BTCUSDT",), ms("2022-05-01T00:00"), 72)


def _at(frame: pd.DataFrame, hour: str) -> pd.Index:
    return frame.index[frame["open_time"] == ms(hour)]


def test_the_shipped_outage_list_is_versioned_and_holds_the_2021_gaps() -> None:
    outages = load_known_outages()
    assert outages.version >= 1
    in_2021 = sorted(t for t in outages.missing_hours("BTCUSDT") if t < ms("2022-01-01T00:00"))
    assert len(in_2021) == 13
    assert ms("2021-08-13T02:00") in in_2021 and ms("2021-08-13T05:00") in in_2021
    assert ms("2021-12-24T04:00") in outages.truncated_hours("ETHUSDT")


def test_clean_klines_pass(validator: KlineValidator) -> None:
    result = validator.validate(_klines(), "BTCUSDT", START, END)
    assert result.success, result.report()
    assert result.rows == 72 and result.known_gaps == ()


@pytest.mark.parametrize(
    ("rule", "hour", "corrupt"),
    [
        ("low_le_open_close_le_high", "2022-05-02T10:00", {"high": 1.0}),
        ("prices_positive", "2022-05-01T05:00", {"open": -1.0, "low": -2.0}),
        ("volume_non_negative", "2022-05-03T07:00", {"volume": -3.0}),
        ("close_time_is_open_time_plus_3599999", "2022-05-01T12:00", {"close_time": ms("2022-05-01T12:30")}),
    ],
)
def test_a_broken_kline_fails_its_rule_naming_symbol_and_hour(
    validator: KlineValidator, rule: str, hour: str, corrupt: dict[str, float]
) -> None:
    frame = _klines()
    for column, value in corrupt.items():
        frame.loc[_at(frame, hour), column] = value
    result = validator.validate(frame, "BTCUSDT", START, END)

    assert not result.success
    failure = next(f for f in result.failures if f.rule == rule)
    assert failure.symbol == "BTCUSDT" and failure.hours == (ms(hour),)
    assert result.failed_days == {hour[:10]}
    assert f"{rule} (" in result.report() and f"{hour.replace('T', ' ')} UTC" in result.report()


def test_a_duplicate_open_time_fails_uniqueness(validator: KlineValidator) -> None:
    frame = _klines()
    frame = pd.concat([frame, frame.loc[_at(frame, "2022-05-03T01:00")]], ignore_index=True)
    result = validator.validate(frame, "BTCUSDT", START, END)
    failure = next(f for f in result.failures if f.rule == "unique_open_time")
    assert failure.hours == (ms("2022-05-03T01:00"),)


def test_an_unknown_missing_hour_fails_but_a_known_outage_is_a_known_gap(validator: KlineValidator) -> None:
    frame = _klines()
    frame = frame.drop(index=_at(frame, "2022-05-02T03:00").append(_at(frame, "2022-05-03T20:00")))
    result = validator.validate(frame, "BTCUSDT", START, END)

    assert result.known_gaps == (OUTAGE,)
    (failure,) = result.failures
    assert failure.rule == "no_unknown_missing_hour" and failure.hours == (ms("2022-05-03T20:00"),)


def test_a_missing_first_hour_of_the_range_is_caught(validator: KlineValidator) -> None:
    frame = _klines().iloc[1:]
    result = validator.validate(frame, "BTCUSDT", START, END)
    assert [f.hours for f in result.failures] == [(START,)]


def test_only_a_known_truncated_kline_may_close_early(validator: KlineValidator) -> None:
    frame = _klines()
    frame.loc[_at(frame, "2022-05-02T02:00"), "close_time"] = TRUNCATED + 1_234_567
    assert validator.validate(frame, "BTCUSDT", START, END).success


def test_open_time_off_the_hour_fails(validator: KlineValidator) -> None:
    frame = _klines()
    frame.loc[_at(frame, "2022-05-01T03:00"), "open_time"] = ms("2022-05-01T03:00") + 60_000
    result = validator.validate(frame, "BTCUSDT", START, END)
    rules = {f.rule for f in result.failures}
    assert "open_time_on_the_hour" in rules and "no_unknown_missing_hour" in rules


def test_publishing_keeps_only_the_failing_day_out_of_validated(tmp_path: Path, validator: KlineValidator) -> None:
    frame = _klines()
    frame.loc[_at(frame, "2022-05-02T10:00"), "volume"] = -1.0
    lake.write_range(tmp_path, "raw", frame, START, END)
    results = publish(tmp_path, ["BTCUSDT"], START, END, validator)

    validated = lake.read_range(tmp_path, "validated", ["BTCUSDT"], START, END)
    assert set(lake.day_of(t) for t in validated["open_time"]) == {"2022-05-01", "2022-05-03"}
    assert len(validated) == 48
    with pytest.raises(ValidationFailed) as caught:
        BackfillSummary(START, END, "test", results=results).raise_for_failures()
    assert "volume_non_negative" in str(caught.value) and "BTCUSDT" in str(caught.value)
    assert "2022-05-02 10:00 UTC" in caught.value.report


def test_the_top_level_great_expectations_folder_does_not_shadow_the_library() -> None:
    import great_expectations

    repo_folder = Path(__file__).resolve().parents[2] / "great_expectations"
    assert not (repo_folder / "__init__.py").exists()
    assert great_expectations.__file__ is not None and "site-packages" in great_expectations.__file__
