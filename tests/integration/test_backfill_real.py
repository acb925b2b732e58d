"""Two years of real Binance klines (../shared/data/binance_spot_1h) backfilled by python-binance from
the simulator, and by ``klinestream backfill --source files``: the validated lake equals the source
files row for row, and the 13 real 2021 outage hours are known gaps, not failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.backfill import KlineSource, backfill
from pipelines.validation import format_hour
from simulator import KlineStore, SimulatorServer
from tests.market_data import assert_validated_equals_files, ms

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMBOLS = ["BNBUSDT", "BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT"]
START, END = ms("2021-01-01T00:00"), ms("2023-02-01T00:00")
OUTAGES_2021 = [
    "2021-02-11T04:00", "2021-03-06T02:00", "2021-04-20T02:00", "2021-04-20T03:00", "2021-04-25T05:00",
    "2021-04-25T06:00", "2021-04-25T07:00", "2021-08-13T02:00", "2021-08-13T03:00", "2021-08-13T04:00",
    "2021-08-13T05:00", "2021-09-29T07:00", "2021-09-29T08:00",
]  # fmt: skip


def test_python_binance_through_the_simulator_backfills_two_years_exactly(
    tmp_path: Path, shared_klines_dir: Path
) -> None:
    server = SimulatorServer(KlineStore.from_files(shared_klines_dir, SYMBOLS), port=0)
    with server:
        summary = backfill(tmp_path, KlineSource("simulator", server.base_url), SYMBOLS, START, END)

    assert summary.failures == [], summary.report()
    assert summary.rows == 5 * 18_251
    assert [format_hour(h) for h in summary.known_gap_hours] == [f"{h.replace('T', ' ')} UTC" for h in OUTAGES_2021]
    assert all(len(r.known_gaps) == 13 for r in summary.results)
    assert_validated_equals_files(tmp_path, shared_klines_dir, SYMBOLS, START, END, 18_251)


def test_the_same_range_loads_with_the_cli_from_files(tmp_path: Path, shared_klines_dir: Path) -> None:
    cli = Path(sys.executable).with_name("klinestream")
    env = {**os.environ, "KLINESTREAM_HOME": str(tmp_path / "var"), "KLINESTREAM_LAKE_DIR": str(tmp_path / "lake")}
    command = [str(cli), "backfill", "--symbols", ",".join(SYMBOLS), "--range", "2021-01-01:2023-02-01"]
    result = subprocess.run(
        [*command, "--source", "files", "--data-dir", str(shared_klines_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "91255 klines, 13 known outage hours" in result.stdout
    assert_validated_equals_files(tmp_path / "lake", shared_klines_dir, SYMBOLS, START, END, 18_251)
