"""Feature sets: no look-ahead and exact lookbacks for every feature, values against direct computations,
version-1 specs unchanged, version-2 specs keep their exact feature list through a save and load."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import feature_sets, indicators
from models.agent import DqnAgent
from models.config import AgentConfig
from models.feature_sets import FEATURE_SETS, FEATURES
from models.features import FeatureError, FeatureSpec, Normalizer, compute_feature_table, infer_spec
from models.kline import HOUR_MS
from models.policy import Policy
from models.synthetic import START_MS, synthetic_klines
from tests.unit.frozen_v1_features import version1_columns, version1_table

SETS = sorted(FEATURE_SETS)
HOURS = 720
T = 620  # a row with every lookback (≤ 503 h) inside the frame
#: policy.json's feature_spec as version-1 code wrote it (main b680bc2, three symbols without count/taker).
VERSION1_SPEC = {
    "account": True,
    "optional": {
        "BNBUSDT": ["log_count", "taker_buy_ratio"],
        "BTCUSDT": ["log_count", "taker_buy_ratio"],
        "ETHUSDT": ["log_count", "taker_buy_ratio"],
    },
    "symbols": ["BNBUSDT", "BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT"],
    "traded_symbol": "BTCUSDT",
    "version": 1,
    "window": 10,
}


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    return synthetic_klines(HOURS, seed=11)


def _perturbed(frame: pd.DataFrame, hours: pd.Series, seed: int = 0) -> pd.DataFrame:
    """``frame`` with every value of the klines selected by ``hours`` changed (prices, volume, count, taker)."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    n = int(hours.sum())
    factor = rng.uniform(0.8, 1.25, n)
    for column in ("open", "high", "low", "close"):
        out.loc[hours, column] = out.loc[hours, column].to_numpy() * factor
    out.loc[hours, "volume"] = out.loc[hours, "volume"].to_numpy() * rng.uniform(0.2, 5.0, n)
    out.loc[hours, "taker_buy_volume"] = out.loc[hours, "volume"].to_numpy() * rng.uniform(0.1, 0.9, n)
    out.loc[hours, "count"] = out.loc[hours, "count"] + 7
    return out


def _changed_columns(spec: FeatureSpec, a: np.ndarray, b: np.ndarray) -> list[str]:
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return [column for column, ok in zip(spec.columns, same, strict=True) if not ok]


@pytest.mark.parametrize("feature_set", SETS)
def test_changing_any_later_kline_never_changes_an_earlier_feature_row(klines: pd.DataFrame, feature_set: str) -> None:
    spec = infer_spec(klines, feature_set=feature_set)
    t = START_MS + T * HOUR_MS
    before = compute_feature_table(klines, spec).values
    after = compute_feature_table(_perturbed(klines, klines["open_time"] > t), spec).values
    for row in (0, spec.warmup_hours, T - 1, T):
        assert _changed_columns(spec, before[row], after[row]) == [], f"row {row}"
    # the perturbation reaches every feature one hour later (so the test above can fail)
    assert _changed_columns(spec, before[T + 1], after[T + 1]) == [c for c in spec.columns if not c.endswith(":gap")]


@pytest.mark.parametrize("feature_set", SETS)
def test_each_feature_reads_exactly_its_lookback(klines: pd.DataFrame, feature_set: str) -> None:
    spec = infer_spec(klines, feature_set=feature_set)
    table = compute_feature_table(klines, spec).values
    lookbacks = np.array([FEATURES[column.split(":")[1]].lookback for column in spec.columns])
    for lookback in sorted(set(lookbacks.tolist())):
        columns, first_read = np.flatnonzero(lookbacks == lookback), START_MS + (T - lookback) * HOUR_MS
        older = compute_feature_table(_perturbed(klines, klines["open_time"] < first_read), spec).values
        read_before = [spec.columns[c] for c in columns if older[T, c] != table[T, c]]
        assert read_before == [], f"these read before their lookback {lookback}"
        # dropping the kline of hour t - lookback (every symbol) changes them: the lookback is not overstated
        dropped = compute_feature_table(klines[klines["open_time"] != first_read], spec).values
        unread = [spec.columns[c] for c in columns if dropped[T, c] == table[T, c]]
        assert unread == [], f"these do not read hour t-{lookback}"


@pytest.mark.parametrize("feature_set", SETS)
def test_the_last_history_hours_reproduce_a_row_exactly(klines: pd.DataFrame, feature_set: str) -> None:
    spec = infer_spec(klines, feature_set=feature_set)
    full = compute_feature_table(klines, spec)
    t = int(full.open_time[T])
    recent = klines[(klines["open_time"] <= t) & (klines["open_time"] > t - spec.history_hours * HOUR_MS)]
    table = compute_feature_table(recent, spec)
    assert len(table) == spec.history_hours
    assert table.valid[-spec.window :].all() and not table.valid[-spec.window - 1]
    assert np.array_equal(table.values[-spec.window :], full.values[T - spec.window + 1 : T + 1])


def test_history_hours_is_the_longest_lookback_plus_the_window(klines: pd.DataFrame) -> None:
    assert infer_spec(klines, window=10).history_hours == 24 + 10  # the reference set, as before feature sets
    spec = infer_spec(klines, window=7, feature_set="indicators")
    assert spec.history_hours == indicators.ewma_length(168) - 1 + 7 == 510


@pytest.mark.parametrize("feature_set", SETS)
def test_every_feature_is_defined_across_an_outage(feature_set: str) -> None:
    frame = synthetic_klines(HOURS, seed=5, missing_hours=(600, 601, 602))
    spec = infer_spec(frame, feature_set=feature_set)
    table = compute_feature_table(frame, spec)
    assert table.valid[spec.warmup_hours :].all()
    assert table.values[600:603, spec.columns.index("BTCUSDT:ret_1h")].tolist() == [0.0, 0.0, 0.0]
    assert not table.tradable[600:603].any() and table.tradable[603]


# --- values against direct computations on a toy series -------------------------------------------------
def _toy(hours: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, hours)))
    high, low = close * (1 + rng.uniform(0, 0.01, hours)), close * (1 - rng.uniform(0, 0.01, hours))
    return close, high, low, rng.lognormal(3.0, 0.5, hours)


def test_rsi_cci_and_bollinger_match_their_textbook_formulas() -> None:
    close, high, low, _ = _toy()
    ret = np.concatenate([[np.nan], np.diff(np.log(close))])
    rsi, cci, bollinger = (
        indicators.rsi(ret, 14),
        indicators.cci(high, low, close, 20),
        indicators.band_position(close, 20, 2.0),
    )
    typical = pd.Series((high + low + close) / 3)
    sma = typical.rolling(20).mean()
    mean_deviation = typical.rolling(20).apply(lambda x: np.abs(x - x.mean()).mean(), raw=True)
    assert np.allclose(cci[19:], ((typical - sma) / (0.015 * mean_deviation) / 100)[19:], rtol=1e-10)
    percent_b = (close - pd.Series(close).rolling(20).mean()) / (4 * pd.Series(close).rolling(20).std(ddof=0)) + 0.5
    assert np.allclose(bollinger[19:], (2 * percent_b - 1)[19:], rtol=1e-10)
    for t in (14, 100, 399):
        gains, losses = np.maximum(ret[t - 13 : t + 1], 0).mean(), np.maximum(-ret[t - 13 : t + 1], 0).mean()
        textbook = 100 - 100 / (1 + gains / losses)
        assert rsi[t] == pytest.approx(textbook / 50 - 1, rel=1e-10)
    assert np.isnan(rsi[13]) and np.isnan(cci[18]) and np.isnan(bollinger[18])


def test_ewma_ratio_is_the_ewma_of_its_truncated_window() -> None:
    close, *_ = _toy()
    ratio, length = indicators.ewma_ratio(close, 48), indicators.ewma_length(48)
    assert length == 144 and np.isnan(ratio[length - 2]) and np.isfinite(ratio[length - 1])
    for t in (length - 1, 300, 399):
        ewma = pd.Series(close[t - length + 1 : t + 1]).ewm(span=48, adjust=True).mean().iloc[-1]
        assert ratio[t] == pytest.approx(np.log(close[t] / ewma), rel=1e-10)


def test_volatility_force_index_and_returns_match_direct_loops() -> None:
    close, _, _, volume = _toy()
    log_close = np.log(close)
    ret = np.concatenate([[np.nan], np.diff(log_close)])
    rvol, force = indicators.realised_volatility(ret, 24), indicators.force_index(ret, volume, 13, 24)
    for t in (24, 200, 399):
        assert rvol[t] == pytest.approx(np.log(np.std(ret[t - 23 : t + 1])), rel=1e-12)
        assert indicators.log_return(log_close, 4)[t] == pytest.approx(np.log(close[t] / close[t - 4]), rel=1e-9)
    for t in (35, 399):
        raw = [100 * ret[u] * volume[u] / volume[u - 23 : u + 1].mean() for u in range(t - 12, t + 1)]
        assert force[t] == pytest.approx(np.sign(np.mean(raw)) * np.log1p(abs(np.mean(raw))), rel=1e-10)
    assert np.isnan(rvol[23]) and np.isnan(force[34]) and np.isfinite(force[35])


def test_relative_returns_are_the_context_return_minus_the_traded_one(klines: pd.DataFrame) -> None:
    spec = infer_spec(klines, feature_set="indicators")
    table = compute_feature_table(klines, spec)
    assert "BTCUSDT:rel_ret_24h" not in spec.columns  # the traded symbol has none
    close = klines.pivot(index="open_time", columns="symbol", values="close")
    expected = np.log(close["ETHUSDT"] / close["ETHUSDT"].shift(24)) - np.log(
        close["BTCUSDT"] / close["BTCUSDT"].shift(24)
    )
    assert np.allclose(table.values[24:, spec.columns.index("ETHUSDT:rel_ret_24h")], expected.to_numpy()[24:])


# --- versions ---------------------------------------------------------------------------------------
def test_a_version1_spec_loads_and_computes_exactly_what_version1_code_computed() -> None:
    frame = synthetic_klines(300, seed=7, missing_hours=(40, 41, 150))
    frame.loc[frame["symbol"].isin(["LTCUSDT", "XRPUSDT"]), ["count", "taker_buy_volume"]] = None
    for document in (
        VERSION1_SPEC,
        {**VERSION1_SPEC, "window": 4, "optional": {"BTCUSDT": ["taker_buy_ratio", "log_count"]}},
    ):
        spec = FeatureSpec.from_dict(json.loads(json.dumps(document)))
        table = compute_feature_table(frame, spec)
        grid, values, close = version1_table(frame, document)
        assert list(spec.columns) == version1_columns(document)
        assert np.array_equal(table.open_time, grid) and np.array_equal(table.close, close)
        assert np.array_equal(table.values, values, equal_nan=True)
        assert spec.to_dict() == document and spec.history_hours == 24 + document["window"]
        assert replace(spec, window=3).to_dict() == {**document, "window": 3}


def test_the_default_spec_is_version2_of_the_reference_set_with_the_same_columns() -> None:
    frame = synthetic_klines(100)
    frame.loc[frame["symbol"].isin(["LTCUSDT", "XRPUSDT"]), ["count", "taker_buy_volume"]] = None
    spec = infer_spec(frame)
    assert spec.version == 2 and spec.feature_set == "reference"
    assert list(spec.columns) == version1_columns(VERSION1_SPEC)
    version1 = compute_feature_table(frame, FeatureSpec.from_dict(VERSION1_SPEC)).values
    assert np.array_equal(compute_feature_table(frame, spec).values, version1, equal_nan=True)


def test_a_saved_spec_keeps_its_features_when_the_named_set_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = infer_spec(synthetic_klines(60), feature_set="indicators")
    document = json.loads(json.dumps(spec.to_dict()))
    assert document["version"] == 2 and document["feature_set"] == "indicators"
    assert document["features"]["BTCUSDT"] == [n for n in FEATURE_SETS["indicators"] if not n.startswith("rel_")]
    monkeypatch.setitem(feature_sets.FEATURE_SETS, "indicators", ("ret_1h", "gap"))
    loaded = FeatureSpec.from_dict(document)
    assert loaded == spec and loaded.columns == spec.columns
    assert infer_spec(synthetic_klines(60), feature_set="indicators").n_features == 10  # a new spec gets the new set


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 3}, "version 3"),
        ({"feature_set": "nope", "features": {}}, "unknown feature set 'nope'"),
        ({"features": {"BTCUSDT": ["ret_1h", "warp_drive"]}}, "unknown features"),
        ({"features": {"BTCUSDT": ["ret_1h", "rel_ret_1h"]}}, "context symbols only"),
        ({"optional": {}, "features": {"BTCUSDT": ["log_count"]}}, "needs count"),
        ({"version": 1, "features": {"BTCUSDT": ["ret_1h", "gap"]}}, "version-1 feature spec has the reference"),
        ({"version": 1, "features": {}, "feature_set": "indicators"}, "version-1 feature spec has no feature set"),
    ],
)
def test_a_bad_spec_is_refused_with_a_clear_error(change: dict, message: str) -> None:
    document = {**infer_spec(synthetic_klines(60), symbols=("BTCUSDT",)).to_dict(), **change}
    with pytest.raises(FeatureError, match=message):
        FeatureSpec.from_dict(document)


@pytest.mark.parametrize("variant", ["linear", "lstm"])
def test_a_version2_policy_round_trips_and_decides_on_its_history_hours(tmp_path: Path, variant: str) -> None:
    frame = synthetic_klines(HOURS, seed=3)
    spec = infer_spec(frame, window=6, feature_set="extended")
    normalizer = Normalizer.fit(compute_feature_table(frame, spec), spec)
    agent = DqnAgent(AgentConfig(variant=variant), spec.window, spec.n_features, spec.n_account, device="cpu", seed=1)
    loaded = Policy.load(agent.to_policy(spec, normalizer).save(tmp_path))
    assert loaded.spec == spec and loaded.history_hours == spec.history_hours == 503 + 6
    t = START_MS + T * HOUR_MS
    recent = frame[(frame["open_time"] <= t) & (frame["open_time"] > t - spec.history_hours * HOUR_MS)]
    _, index, states = loaded.states(frame)
    expected = loaded.q_values_from_states(states[np.searchsorted(index, T)][None])[0]
    assert np.array_equal(loaded.q_values(recent), expected)
    with pytest.raises(FeatureError, match=f"need the last {spec.history_hours} hourly klines"):
        loaded.q_values(recent[recent["open_time"] > recent["open_time"].min()])
