"""``klinestream backfill|validate|simulator``: bad arguments and failures exit non-zero with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(sys.executable).with_name("klinestream")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KLINESTREAM_HOME": str(tmp_path / "var")}
    env.pop("KLINESTREAM_DATA_DIR", None)
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backfill", "--range", "2021-02-01:2021-01-01", "--source", "files", "--data-dir", "."], "ends before"),
        (["backfill", "--range", "yesterday:2021-01-01"], "not a date"),
        (["backfill", "--range", "2021-01-01:2021-01-02", "--source", "ftp"], "not one of"),
        (["backfill", "--range", "2021-01-01:2021-01-02", "--source", "files"], "KLINESTREAM_DATA_DIR"),
        (["backfill", "--symbols", "btc-usdt", "--range", "2021-01-01:2021-01-02"], "alphanumeric"),
        (["backfill", "--source", "files"], "missing --range"),
        (["backfill", "--range", "2021-01-01:2021-01-02", "--start", "2021-01-01", "--end", "2021-01-02"], "not also"),
        (["simulator", "--port", "0"], "--data-dir"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = _run(tmp_path, *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


@pytest.mark.slow
def test_a_failed_validation_exits_1_naming_rule_symbol_and_hours(tmp_path: Path) -> None:
    result = _run(tmp_path, "validate", "--symbols", "BTCUSDT", "--range", "2021-02-01:2021-02-01T02:00")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: kline validation failed: no_unknown_missing_hour")
    assert "BTCUSDT" in last and "2021-02-01 00:00 UTC, 2021-02-01 01:00 UTC" in last
