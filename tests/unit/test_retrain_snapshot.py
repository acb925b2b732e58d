"""The retrain's dataset step reads the lake's validated zone only and names what is missing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from adapters import lake
from models.errors import PermanentError
from models.kline import HOUR_MS
from models.settings import load_settings
from models.time_range import parse_time
from pipelines.retrain import build_snapshot, read_snapshot
from pipelines.retrain_config import config_from_params
from tests.registry_helpers import TEST_RANGE, TRAIN_RANGE, registry_klines

#: The runs' data-interval end (pinned ranges do not use it).
NOW = parse_time("2022-02-01")


def _write(root: Path, zone: str, klines: pd.DataFrame) -> None:
    start, end = int(klines["open_time"].min()), int(klines["open_time"].max()) + HOUR_MS
    lake.write_range(root, zone, klines, start, end)  # type: ignore[arg-type]


def test_the_snapshot_holds_the_validated_klines_and_never_the_raw_ones(tmp_path: Path) -> None:
    klines = registry_klines()
    _write(tmp_path / "lake", "validated", klines)
    _write(tmp_path / "lake", "raw", klines.assign(close=klines["close"] * 2))
    settings = load_settings(home=tmp_path, lake_dir=tmp_path / "lake")
    config = config_from_params({"train_range": TRAIN_RANGE, "test_range": TEST_RANGE})

    snapshot = build_snapshot(settings, config, tmp_path, NOW)

    frame = read_snapshot(snapshot)
    assert set(frame["symbol"]) == set(settings.symbols)
    expected = klines.set_index(["symbol", "open_time"])["close"]
    assert (
        frame.set_index(["symbol", "open_time"])["close"]
        == expected.loc[frame.set_index(["symbol", "open_time"]).index]
    ).all()


def test_a_range_without_validated_klines_is_a_readable_error(tmp_path: Path) -> None:
    klines = registry_klines()
    _write(tmp_path / "lake", "validated", klines[klines["symbol"] != "XRPUSDT"])
    settings = load_settings(home=tmp_path, lake_dir=tmp_path / "lake")
    with pytest.raises(PermanentError, match=r"no klines of \['XRPUSDT'\].*klines_backfill"):
        build_snapshot(
            settings, config_from_params({"train_range": TRAIN_RANGE, "test_range": TEST_RANGE}), tmp_path, NOW
        )
    late_test = config_from_params({"train_range": TRAIN_RANGE, "test_range": "2022-03-01:2022-04-01"})
    _write(tmp_path / "lake", "validated", klines)
    with pytest.raises(PermanentError, match="in the test_range 2022-03-01:2022-04-01"):
        build_snapshot(settings, late_test, tmp_path, NOW)
