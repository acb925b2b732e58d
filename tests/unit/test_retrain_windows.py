"""Rolling retrain windows (pipelines/retrain.py: plan_ranges, build_snapshot) and the trigger rule
(retrain_due, due_from_events) on a temporary validated lake of synthetic klines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from adapters import lake
from models.errors import PermanentError
from models.kline import HOUR_MS
from models.settings import DEFAULT_SYMBOLS, Settings, load_settings
from models.synthetic import random_walk_klines
from models.time_range import parse_time
from pipelines.retrain import (
    ASSET_TRIGGERED,
    DAY_MS,
    build_snapshot,
    due_from_events,
    frame_digest,
    plan_ranges,
    retrain_due,
    validated_until,
)
from pipelines.retrain_config import RetrainConfig, config_from_params
from pipelines.walkforward.folds import min_embargo_hours

#: The newest validated kline opens at T - 1 h.
T = parse_time("2023-03-10")


def _lake(tmp_path: Path, start: str, end_ms: int) -> Settings:
    klines = random_walk_klines(DEFAULT_SYMBOLS, parse_time(start), (end_ms - parse_time(start)) // HOUR_MS, seed=3)
    lake.write_range(tmp_path / "lake", "validated", klines, parse_time(start), end_ms)
    return load_settings(home=tmp_path, lake_dir=tmp_path / "lake")


def test_without_params_the_holdout_is_the_last_28_days_and_training_the_12_months_before_the_embargo(
    tmp_path: Path,
) -> None:
    settings = _lake(tmp_path, "2023-02-20", T)
    ranges = plan_ranges(settings, config_from_params({}), interval_end_ms=T + 5 * DAY_MS)
    embargo = min_embargo_hours()
    assert (ranges.test.start_ms, ranges.test.end_ms) == (T - 28 * DAY_MS, T)
    assert ranges.train.end_ms == T - 28 * DAY_MS - embargo * HOUR_MS
    assert ranges.train.start_ms == parse_time("2022-02-10") - embargo * HOUR_MS
    assert ranges.embargo_hours == embargo and ranges.source == "run"
    params = ranges.params()
    assert params["data.test_range"] == "2023-02-10:2023-03-10" and params["data.embargo_hours"] == embargo


def test_the_holdout_ends_at_the_run_interval_end_when_the_lake_goes_further(tmp_path: Path) -> None:
    settings = _lake(tmp_path, "2023-02-20", T)
    end = T - 3 * DAY_MS + 5 * HOUR_MS + 123  # mid-hour: only closed hours before it count
    ranges = plan_ranges(settings, RetrainConfig(holdout_days=7, train_months=1), interval_end_ms=end)
    assert ranges.test.end_ms == T - 3 * DAY_MS + 5 * HOUR_MS
    assert ranges.test.start_ms == ranges.test.end_ms - 7 * DAY_MS


def test_the_newest_hour_is_the_one_every_symbol_has(tmp_path: Path) -> None:
    settings = _lake(tmp_path, "2023-03-01", T)
    late = random_walk_klines(("BTCUSDT",), T, 30, seed=4)
    lake.write_range(tmp_path / "lake", "validated", late, T, T + 30 * HOUR_MS)
    assert validated_until(settings, T + 40 * DAY_MS) == T


def test_ranges_move_forward_with_new_klines(tmp_path: Path) -> None:
    settings = _lake(tmp_path, "2023-02-20", T)
    before = plan_ranges(settings, RetrainConfig(), T + 30 * DAY_MS)
    _lake(tmp_path, "2023-03-10", T + 9 * DAY_MS)
    after = plan_ranges(settings, RetrainConfig(), T + 30 * DAY_MS)
    assert after.test.start_ms - before.test.start_ms == 9 * DAY_MS
    assert after.train.end_ms - before.train.end_ms == 9 * DAY_MS


def test_an_embargo_shorter_than_the_feature_window_is_refused(tmp_path: Path) -> None:
    settings = _lake(tmp_path, "2023-03-01", T)
    with pytest.raises(PermanentError, match="shorter than the feature window plus one hour"):
        plan_ranges(settings, RetrainConfig(embargo_hours=min_embargo_hours() - 1), T)
    overlap = config_from_params({"train_range": "2022-01-01:2023-01-02", "test_range": "2023-01-01:2023-02-01"})
    with pytest.raises(PermanentError, match="overlaps the test_range"):
        plan_ranges(settings, overlap, T)
    with pytest.raises(PermanentError, match="needs a pinned test_range"):
        config_from_params({"train_range": "2022-01-01:2022-12-01"})


def test_pinned_ranges_are_kept_and_say_so(tmp_path: Path) -> None:
    settings = _lake(tmp_path, "2023-03-01", T)
    pinned = config_from_params({"test_range": "2023-01-01:2023-02-01", "train_months": 2})
    ranges = plan_ranges(settings, pinned, T)
    assert str(ranges.test) == "2023-01-01:2023-02-01" and ranges.source == "params"
    assert ranges.train.end_ms == parse_time("2023-01-01") - min_embargo_hours() * HOUR_MS


def test_pinned_adjacent_ranges_are_kept_with_their_real_gap_as_the_embargo(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _lake(tmp_path, "2023-03-01", T)
    pinned = config_from_params({"train_range": "2022-09-15:2023-01-01", "test_range": "2023-01-01:2023-02-01"})
    ranges = plan_ranges(settings, pinned, T)
    assert (str(ranges.train), ranges.embargo_hours, ranges.source) == ("2022-09-15:2023-01-01", 0, "params")
    assert "reach into the holdout" in caplog.text


def test_an_empty_lake_names_the_symbol_and_the_backfill(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, lake_dir=tmp_path / "lake")
    with pytest.raises(PermanentError, match=r"has no [A-Z]+USDT klines before 2023-03-10: run the klines_backfill"):
        plan_ranges(settings, RetrainConfig(), T)


def test_the_snapshot_logs_its_ranges_and_content_hash(tmp_path: Path) -> None:
    settings = _lake(tmp_path, "2022-12-01", T)
    config = RetrainConfig(holdout_days=7, train_months=1)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    snapshot = build_snapshot(settings, config, tmp_path / "a", T + DAY_MS)
    again = build_snapshot(settings, config, tmp_path / "b", T + DAY_MS)
    params = snapshot["params"]
    assert params["data.test_range"] == "2023-03-03:2023-03-10" and params["data.ranges_from"] == "run"
    assert params["data.snapshot_sha256"] == snapshot["sha256"] == again["sha256"]
    assert snapshot["sha256"] == frame_digest(pd.read_parquet(snapshot["klines"]).sample(frac=1.0, random_state=0))
    frame = pd.read_parquet(snapshot["klines"])
    assert snapshot["sha256"] != frame_digest(frame.assign(close=frame["close"] * 1.0001))


def test_only_klines_triggered_runs_wait_for_min_new_days() -> None:
    last = T
    assert retrain_due("scheduled", T, last, 7)[0] and retrain_due("manual", T, last, 7)[0]
    assert retrain_due(ASSET_TRIGGERED, T + 100 * DAY_MS, None, 7)[0]
    for hours in (1, 24, 6 * 24 + 23):  # every hourly backfill short of seven days
        due, reason = retrain_due(ASSET_TRIGGERED, last + hours * HOUR_MS, last, 7)
        assert not due and "< min_new_days 7" in reason
    assert retrain_due(ASSET_TRIGGERED, last + 7 * DAY_MS, last, 7)[0]


def test_the_last_rolling_retrain_comes_from_the_asset_events(tmp_path: Path) -> None:
    settings = _lake(tmp_path, "2023-03-01", T)
    config = RetrainConfig()
    rolling = {"ranges_from": "run", "holdout_end_ms": T - 3 * DAY_MS}
    pinned = {"ranges_from": "params", "holdout_end_ms": T - 30 * DAY_MS}
    assert not due_from_events(settings, config, ASSET_TRIGGERED, [pinned, rolling])
    assert due_from_events(settings, config, ASSET_TRIGGERED, [pinned])  # no rolling retrain yet
    assert due_from_events(settings, config, ASSET_TRIGGERED, [{**rolling, "holdout_end_ms": T - 7 * DAY_MS}])
    assert due_from_events(settings, config, "scheduled", [rolling])
    other = {**rolling, "model": f"{settings.mlflow_model_name}-other"}  # another model's retrain does not count
    assert due_from_events(settings, config, ASSET_TRIGGERED, [pinned, other])
    assert not due_from_events(
        settings, config, ASSET_TRIGGERED, [other, {**rolling, "model": settings.mlflow_model_name}]
    )


def test_the_dag_short_circuits_first_and_reads_the_asset_its_gate_publishes() -> None:
    from airflow.providers.standard.operators.python import ShortCircuitOperator

    from klinestream.airflow_dags import load_dag

    dag = load_dag("dqn_retrain")
    due, gate = dag.get_task("due"), dag.get_task("gate")
    assert isinstance(due, ShortCircuitOperator) and due.ignore_downstream_trigger_rules
    assert due.upstream_task_ids == set() and due.downstream_task_ids == {"plan"}
    assert (
        [a.uri for a in due.inlets] == [a.uri for a in gate.outlets] == ["klinestream://mlflow/dqn_retrain/retrained"]
    )
    assert "short-circuit" in dag.doc_md and "asset events" in dag.doc_md
