"""The klines_backfill DAG run by Airflow's own ``dag.test()`` against the exchange simulator."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters import lake
from klinestream.airflow_dags import load_dag
from models.kline import HOUR_MS
from models.synthetic import random_walk_klines
from tests.market_data import ms, running_simulator

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def test_dag_test_for_one_hour_writes_exactly_that_hour_to_raw_and_validated(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    market = random_walk_klines(SYMBOLS, ms("2022-03-04T00:00"), 48)
    root = tmp_path / "lake"
    monkeypatch.setenv("KLINESTREAM_LAKE_DIR", str(root))
    monkeypatch.setenv("KLINESTREAM_SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.delenv("KLINESTREAM_DATA_DIR", raising=False)
    with running_simulator(market) as sim:
        monkeypatch.setenv("KLINESTREAM_BINANCE_BASE_URL", sim.base_url)
        # a manual run's data interval is the last complete one before its logical date: [05:00, 06:00)
        dag_run = load_dag("klines_backfill").test(logical_date=datetime(2022, 3, 4, 6, tzinfo=UTC))

    assert dag_run.state == "success"
    hour = int(dag_run.data_interval_start.timestamp() * 1000)
    assert int(dag_run.data_interval_end.timestamp() * 1000) == hour + HOUR_MS
    assert hour == ms("2022-03-04T05:00")
    everything = (ms("2022-01-01T00:00"), ms("2023-01-01T00:00"))
    for zone in ("raw", "validated"):
        frame = lake.read_range(root, zone, SYMBOLS, *everything)
        assert sorted(frame["symbol"]) == SYMBOLS, zone
        assert set(frame["open_time"]) == {hour}, zone
    expected = market[market["open_time"] == hour].reset_index(drop=True)
    got = lake.read_range(root, "validated", SYMBOLS, *everything)
    assert got.equals(expected)
