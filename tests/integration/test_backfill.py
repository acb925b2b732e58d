"""Backfill through python-binance and the simulator: faults end as retried requests or readable
validation failures (and the failing day never reaches ``validated``); reruns change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import lake
from models.kline import HOUR_MS
from models.synthetic import random_walk_klines
from pipelines.backfill import KlineSource, backfill
from pipelines.validation import KlineValidator
from simulator import FaultPlan
from tests.market_data import ms, running_simulator

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
START, END = ms("2022-06-01T00:00"), ms("2022-06-04T00:00")
MARKET = random_walk_klines(SYMBOLS, ms("2022-06-01T00:00"), 72)


@pytest.fixture(scope="module")
def validator() -> Iterator[KlineValidator]:
    yield KlineValidator()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.mark.parametrize(
    ("fault", "rule"),
    [
        ({"kind": "corrupt", "how": "high_below_low"}, "low_le_open_close_le_high"),
        ({"kind": "corrupt", "how": "negative_volume"}, "volume_non_negative"),
        ({"kind": "corrupt", "how": "duplicate"}, "unique_open_time"),
        ({"kind": "gap"}, "no_unknown_missing_hour"),
    ],
)
def test_a_corrupt_kline_fails_validation_by_name_and_its_day_stays_out_of_validated(
    tmp_path: Path, validator: KlineValidator, fault: dict[str, str], rule: str
) -> None:
    bad_hour = ms("2022-06-02T13:00")
    faults = FaultPlan()
    faults.add({**fault, "symbol": "ETHUSDT", "open_time": bad_hour})
    with running_simulator(MARKET, faults=faults) as sim:
        summary = backfill(tmp_path, KlineSource("simulator", sim.base_url), SYMBOLS, START, END, validator)

    (failed,) = summary.failures
    assert failed.symbol == "ETHUSDT" and [f.rule for f in failed.failures] == [rule]
    assert failed.failures[0].hours == (bad_hour,)
    assert "ETHUSDT" in summary.report() and "2022-06-02 13:00 UTC" in summary.report() and rule in summary.report()
    eth = lake.read_range(tmp_path, "validated", ["ETHUSDT"], START, END)
    assert not any(lake.day_of(t) == "2022-06-02" for t in eth["open_time"])
    assert len(eth) == 48  # the two good days were published
    assert len(lake.read_range(tmp_path, "validated", ["BTCUSDT"], START, END)) == 72


def test_rate_limits_and_server_errors_during_a_backfill_are_retried(tmp_path: Path, validator: KlineValidator) -> None:
    faults = FaultPlan()
    faults.add({"kind": "rate_limit", "count": 2, "retry_after": 0.2})
    faults.add({"kind": "server_error", "count": 2, "status": 503})
    with running_simulator(MARKET, faults=faults) as sim:
        summary = backfill(tmp_path, KlineSource("simulator", sim.base_url), SYMBOLS, START, END, validator)
    assert summary.failures == [] and summary.rows == 144
    assert faults.rest == []  # every injected fault was consumed


def test_rerunning_a_range_or_an_overlapping_one_changes_nothing(tmp_path: Path, validator: KlineValidator) -> None:
    with running_simulator(MARKET) as sim:
        source = KlineSource("simulator", sim.base_url)
        backfill(tmp_path, source, SYMBOLS, START, END, validator)
        first = _files(tmp_path)
        backfill(tmp_path, source, SYMBOLS, START, END, validator)
        assert _files(tmp_path) == first
        backfill(tmp_path, source, SYMBOLS, START + 30 * HOUR_MS, END - 5 * HOUR_MS, validator)
        assert _files(tmp_path) == first
        backfill(tmp_path, source, SYMBOLS, START - 10 * HOUR_MS, START + 2 * HOUR_MS, validator)
    validated = lake.read_range(tmp_path, "validated", SYMBOLS, START, END)
    assert len(validated) == 144 and not validated.duplicated(["symbol", "open_time"]).any()


def test_an_hour_not_yet_published_is_a_temporary_error_for_the_hourly_run(tmp_path: Path) -> None:
    from models.errors import TemporaryError
    from pipelines.backfill import ingest_raw

    hour = ms("2022-06-02T13:00")
    faults = FaultPlan()
    faults.add({"kind": "gap", "symbol": "BTCUSDT", "open_time": hour})
    with running_simulator(MARKET, faults=faults) as sim:
        source = KlineSource("simulator", sim.base_url)
        with pytest.raises(TemporaryError, match="BTCUSDT 2022-06-02 13:00 UTC"):
            ingest_raw(tmp_path, source, SYMBOLS, hour, hour + HOUR_MS, require_complete=True)
        faults.clear()
        assert ingest_raw(tmp_path, source, SYMBOLS, hour, hour + HOUR_MS, require_complete=True) == {
            "BTCUSDT": 1,
            "ETHUSDT": 1,
        }
