"""The feature transform: no look-ahead, gaps flagged, optional columns never invented, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from models.features import (
    FeatureError,
    FeatureSpec,
    Normalizer,
    compute_feature_table,
    infer_spec,
    state_rows,
    window_index,
)
from models.kline import HOUR_MS
from models.synthetic import START_MS, synthetic_klines


def _states(frame, spec, normalizer):
    table = compute_feature_table(frame, spec)
    rows = normalizer.transform(table.values)
    index = np.flatnonzero(state_rows(table, spec.window))
    return table, index, rows[window_index(index, spec.window)]


def test_changing_future_klines_does_not_change_the_current_state() -> None:
    frame = synthetic_klines(200, seed=3)
    spec = infer_spec(frame)
    normalizer = Normalizer.fit(compute_feature_table(frame, spec), spec)
    t = START_MS + 120 * HOUR_MS
    changed = frame.copy()
    future = changed["open_time"] > t
    changed.loc[future, ["open", "high", "low", "close"]] *= 3.0
    changed.loc[future, "volume"] *= 10.0
    table_a, index_a, states_a = _states(frame, spec, normalizer)
    _, _, states_b = _states(changed, spec, normalizer)
    row = int(np.searchsorted(table_a.open_time, t))
    k = int(np.searchsorted(index_a, row))
    assert np.array_equal(states_a[k], states_b[k])
    assert not np.array_equal(states_a[k + 1], states_b[k + 1])  # the change is visible one hour later


def test_the_last_history_hours_reproduce_a_state_exactly() -> None:
    frame = synthetic_klines(300, seed=4)
    spec = infer_spec(frame)
    normalizer = Normalizer.fit(compute_feature_table(frame, spec), spec)
    table, index, states = _states(frame, spec, normalizer)
    t = int(table.open_time[250])
    recent = frame[(frame["open_time"] <= t) & (frame["open_time"] > t - spec.history_hours * HOUR_MS)]
    _, index_recent, states_recent = _states(recent, spec, normalizer)
    assert len(index_recent) == 1
    assert np.array_equal(states_recent[0], states[np.searchsorted(index, 250)])


def test_missing_hours_are_flagged_and_not_tradable() -> None:
    frame = synthetic_klines(100, missing_hours=(50, 51))
    spec = infer_spec(frame)
    table = compute_feature_table(frame, spec)
    gap = spec.columns.index("BTCUSDT:gap")
    assert table.values[50:52, gap].tolist() == [1.0, 1.0]
    assert table.values[49, gap] == 0.0 and table.values[52, gap] == 0.0
    assert not table.tradable[50] and not table.tradable[51] and table.tradable[52]
    assert table.close[50] == table.close[49]  # carried forward, flagged, not invented as a trade price
    ret = spec.columns.index("BTCUSDT:ret_1h")
    assert table.values[50, ret] == 0.0


def test_optional_columns_absent_in_training_are_dropped_from_the_spec() -> None:
    frame = synthetic_klines(60)
    frame.loc[frame["symbol"] == "XRPUSDT", ["count", "taker_buy_volume"]] = None
    spec = infer_spec(frame)
    assert "XRPUSDT:log_count" not in spec.columns and "BTCUSDT:log_count" in spec.columns
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_a_needed_optional_value_that_is_missing_is_an_error_not_a_guess() -> None:
    frame = synthetic_klines(60)
    spec = infer_spec(frame)
    frame.loc[(frame["symbol"] == "BTCUSDT") & (frame["open_time"] == START_MS + 30 * HOUR_MS), "count"] = None
    with pytest.raises(FeatureError, match="BTCUSDT: count missing"):
        compute_feature_table(frame, spec)


def test_normalizer_is_fitted_on_the_training_rows_only_and_round_trips() -> None:
    frame = synthetic_klines(200)
    spec = infer_spec(frame)
    table = compute_feature_table(frame, spec)
    train = np.arange(len(table)) < 120
    fitted = Normalizer.fit(table, spec, train)
    manual = table.values[train & table.valid]
    assert np.allclose(fitted.mean, np.where(fitted.std == 1.0, fitted.mean, manual.mean(axis=0)))
    again = Normalizer.from_json(fitted.to_json())
    assert np.array_equal(again.mean, fitted.mean) and np.array_equal(again.std, fitted.std)


def test_a_missing_context_symbol_is_an_error() -> None:
    frame = synthetic_klines(60)
    spec = infer_spec(frame)
    with pytest.raises(FeatureError, match="ETHUSDT"):
        compute_feature_table(frame[frame["symbol"] != "ETHUSDT"], spec)
