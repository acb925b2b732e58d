"""Walk-forward: folds and their embargo, baselines against hand computations, the statistics, stitching,
and a small end-to-end run on synthetic klines."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.errors import PermanentError
from models.features import WARMUP_HOURS
from models.kline import HOUR_MS
from models.synthetic import synthetic_klines
from models.time_range import parse_range
from pipelines.evaluate import buy_and_hold
from pipelines.walkforward.backtests import FoldMarket, baseline_curve, moving_average, portfolio_config
from pipelines.walkforward.folds import Fold, FoldPlan, add_months, leaked_hours, min_embargo_hours, plan_folds
from pipelines.walkforward.runner import WalkForwardConfig, fold_dataset, run_walkforward
from pipelines.walkforward.statistics import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    hourly_returns,
    performance,
    probabilistic_sharpe_ratio,
    sharpe_confidence_interval,
    stitch,
    trials_sharpe_variance,
)

FEE = 0.001
CAPITAL = 100_000.0


# --- folds -----------------------------------------------------------------------------------------
def test_monthly_folds_tile_the_test_range_and_train_on_the_twelve_months_before_the_embargo() -> None:
    folds = plan_folds(FoldPlan(parse_range("2022-01-01:2023-02-01")))
    assert len(folds) == 13
    assert [str(f.test) for f in folds[:2]] == ["2022-01-01:2022-02-01", "2022-02-01:2022-03-01"]
    assert str(folds[-1].test) == "2023-01-01:2023-02-01"
    for before, after in itertools.pairwise(folds):
        assert before.test.end_ms == after.test.start_ms  # consecutive, no overlap, no hole
    for fold in folds:
        assert fold.test.start_ms - fold.train.end_ms == min_embargo_hours() * HOUR_MS == 35 * HOUR_MS
        assert fold.train.start_ms == add_months(fold.test.start_ms, -12)
        assert leaked_hours(fold).size == 0
    assert str(folds[0].train) == "2021-01-01:2021-12-30T13:00"


def test_expanding_windows_start_together_and_grow() -> None:
    folds = plan_folds(FoldPlan(parse_range("2022-01-01:2022-04-15"), train_months=3, window="expanding"))
    assert len(folds) == 4 and str(folds[-1].test) == "2022-04-01:2022-04-15"
    assert {f.train.start_ms for f in folds} == {parse_range("2021-10-01:2022-01-01").start_ms}
    assert all(a.train.end_ms < b.train.end_ms for a, b in itertools.pairwise(folds))


def test_an_embargo_shorter_than_the_feature_window_is_refused_and_would_leak() -> None:
    with pytest.raises(PermanentError, match="feature window"):
        FoldPlan(parse_range("2022-01-01:2022-03-01"), embargo_hours=min_embargo_hours() - 1)
    test = parse_range("2022-02-01:2022-03-01")
    short = Fold(0, parse_range("2022-01-01:2022-01-31T12:00"), test, 12)  # 12 h: the checker must see it
    leaked = leaked_hours(short)
    assert leaked.size > 0 and leaked.min() >= short.train.start_ms


def test_no_training_sample_reads_a_test_hour(tmp_path: Path) -> None:
    klines = synthetic_klines(24 * 75, start_ms=parse_range("2020-12-01:2021-01-01").start_ms, seed=1)
    config = WalkForwardConfig(test_range="2021-01-15:2021-02-14", train_months=1, seeds=(0,))
    for fold in config.folds():
        dataset = fold_dataset(config, klines, fold)
        # the trainer's klines end before the embargo: neither features nor rewards can reach the test
        assert dataset.table.open_time.max() < fold.train.end_ms <= fold.test.start_ms - 35 * HOUR_MS
        rows = dataset.range_rows(fold.train)
        first_read = dataset.table.open_time[rows[0] - dataset.spec.window + 1] - WARMUP_HOURS * HOUR_MS
        assert first_read >= klines["open_time"].min()
        touched = dataset.table.open_time[rows[-1]] + HOUR_MS  # the last transition's next hour
        assert touched <= fold.train.end_ms < fold.test.start_ms
        # the normalisation was fitted on the training window only
        inside = (dataset.table.open_time >= fold.train.start_ms) & dataset.table.valid
        np.testing.assert_allclose(dataset.normalizer.mean[:3], dataset.table.values[inside].mean(axis=0)[:3])


# --- baselines on a toy series -----------------------------------------------------------------------
def _toy_market(close: list[float], history: int = 0) -> FoldMarket:
    close_arr = np.asarray(close, dtype=np.float64)
    n = len(close_arr)
    return FoldMarket(np.arange(n) * HOUR_MS, close_arr, np.ones(n, bool), np.arange(history, n))


def test_cash_and_buy_and_hold_match_hand_computations() -> None:
    prices = [100.0, 110.0, 99.0, 120.0, 125.0]
    market = _toy_market(prices)
    cash = baseline_curve("cash", market, FEE)
    np.testing.assert_array_equal(cash.equity, np.full(5, CAPITAL))
    assert cash.fees == cash.notional == cash.n_trades == 0
    held = baseline_curve("buy_and_hold", market, FEE)
    quantity = CAPITAL / (1 + FEE) / 100.0  # all the cash, less the fee, at the first close
    sold = quantity * 120.0  # out at the last decision hour (the fourth close)
    expected = [CAPITAL, quantity * 110.0, quantity * 99.0, quantity * 120.0, sold * (1 - FEE)]
    np.testing.assert_allclose(held.equity, expected)
    assert held.fees == pytest.approx(CAPITAL / (1 + FEE) * FEE + sold * FEE)
    assert held.notional == pytest.approx(quantity * 100.0 + sold) and held.n_trades == 2
    # the same figures as the project's buy-and-hold of pipelines/evaluate.py
    reference = buy_and_hold(market.close, market.tradable, market.rows, portfolio_config(FEE))
    assert reference.total_return == pytest.approx(held.equity[-1] / CAPITAL - 1)
    figures = performance(held.equity, held.fees, held.notional, held.n_trades)
    returns = np.diff(expected) / np.array(expected[:-1])
    assert figures.sharpe == pytest.approx(returns.mean() / returns.std() * math.sqrt(24 * 365))
    assert figures.max_drawdown == pytest.approx(1 - quantity * 99.0 / (quantity * 110.0))
    downside = math.sqrt(np.mean(np.minimum(returns, 0) ** 2))
    assert figures.sortino == pytest.approx(returns.mean() / downside * math.sqrt(24 * 365))
    assert figures.turnover == pytest.approx(held.notional / np.mean(expected))


def test_the_trend_rule_is_in_above_its_moving_average_and_out_below() -> None:
    prices = [10.0, 10.0, 10.0, 13.0, 14.0, 9.0, 8.0, 12.0]
    np.testing.assert_allclose(moving_average(np.array(prices), 3)[2:5], [10.0, 11.0, 37 / 3])
    # decisions at the closes 10, 13, 14, 9, 8 against their 3-hour averages 10, 11, 12.33, 12, 10.33:
    # flat (not above), buy at 13, hold at 14, sell at 9, flat at 8; the last close (12) only marks
    curve = baseline_curve("trend", _toy_market(prices, history=2), FEE, trend_hours=3)
    quantity = CAPITAL / (1 + FEE) / 13.0
    after_sell = quantity * 9.0 * (1 - FEE)
    expected = [CAPITAL, CAPITAL, quantity * 14.0, quantity * 9.0, after_sell, after_sell]
    np.testing.assert_allclose(curve.equity, expected)
    assert curve.notional == pytest.approx(quantity * 13.0 + quantity * 9.0)
    assert curve.n_trades == 2


# --- statistics --------------------------------------------------------------------------------------
def test_psr_of_a_known_series_matches_the_hand_computation() -> None:
    returns = np.array([0.01, -0.005, 0.02, 0.0, -0.01, 0.015, 0.004, -0.002])
    n, mean = len(returns), sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / n)
    skew = sum(((r - mean) / std) ** 3 for r in returns) / n
    kurt = sum(((r - mean) / std) ** 4 for r in returns) / n
    sr = mean / std
    z = sr * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert probabilistic_sharpe_ratio(returns) == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))))
    benchmark = 0.1
    z_b = (sr - benchmark) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert probabilistic_sharpe_ratio(returns, benchmark) == pytest.approx(0.5 * (1 + math.erf(z_b / math.sqrt(2))))


def test_the_deflated_sharpe_falls_as_the_number_of_trials_grows() -> None:
    returns = np.random.default_rng(0).normal(0.0004, 0.01, 2000)
    values = [deflated_sharpe_ratio(returns, n, sharpe_variance=0.0004) for n in (1, 2, 10, 100, 1000)]
    assert values[0] == pytest.approx(probabilistic_sharpe_ratio(returns))
    assert all(a > b for a, b in itertools.pairwise(values))
    # the benchmark is the expected best of N lucky trials: close to a simulation of N standard normals
    simulated = np.random.default_rng(1).standard_normal((20_000, 10)).max(axis=1).mean()
    assert expected_max_sharpe(10, 1.0) == pytest.approx(simulated, rel=0.05)


def test_the_trials_variance_and_the_bootstrap_interval() -> None:
    rng = np.random.default_rng(2)
    trials = [rng.normal(0.0002 * k, 0.01, 500) for k in range(4)]
    ratios = [t.mean() / t.std() for t in trials]
    assert trials_sharpe_variance(trials) == pytest.approx(np.var(ratios, ddof=1))
    returns = rng.normal(0.001, 0.01, 1000)
    low, high = sharpe_confidence_interval(returns, n_boot=300)
    point = returns.mean() / returns.std() * math.sqrt(24 * 365)
    assert low < point < high
    assert sharpe_confidence_interval(returns, n_boot=300) == (low, high)  # seeded
    short_low, short_high = sharpe_confidence_interval(returns[:200], n_boot=300)
    assert short_high - short_low > high - low  # less data, wider interval


def test_the_stitched_equity_is_the_product_of_the_folds_growth() -> None:
    rng = np.random.default_rng(3)
    folds = [CAPITAL * np.cumprod(1 + rng.normal(0, 0.01, n)) for n in (30, 50, 20)]
    folds = [np.concatenate([[CAPITAL], f]) for f in folds]
    stitched, starts = stitch(folds, CAPITAL)
    growth = [f[-1] / f[0] for f in folds]
    assert stitched[-1] == pytest.approx(CAPITAL * np.prod(growth))
    np.testing.assert_allclose(starts, CAPITAL * np.cumprod([1.0, *growth[:-1]]))
    assert len(stitched) == sum(len(f) for f in folds)
    np.testing.assert_allclose(hourly_returns(stitched)[:30], hourly_returns(folds[0]))


# --- end to end --------------------------------------------------------------------------------------
def test_a_small_walk_forward_writes_a_report_with_every_strategy(tmp_path: Path) -> None:
    klines = synthetic_klines(24 * 90, start_ms=parse_range("2020-12-01:2021-01-01").start_ms, seed=2)
    config = WalkForwardConfig(
        test_range="2021-02-01:2021-03-01", train_months=1, test_months=1, variants=("linear",), seeds=(0, 1),
        steps=400, n_envs=4, episode_hours=48, bootstrap=100, extra_trials=3,
    )  # fmt: skip
    run = run_walkforward(config, klines, tmp_path, workers=1)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["strategies"]) == {"cash", "buy_and_hold", "trend", "linear/seed0", "linear/seed1"}
    assert summary["n_trials"] == 1 * 2 * 1 + 3
    for name, strategy in summary["strategies"].items():
        stitched, folds = strategy["stitched"], strategy["folds"]
        product = np.prod([1 + f["total_return"] for f in folds]) - 1
        assert stitched["total_return"] == pytest.approx(product), name
        assert set(strategy["fees"]) == {"1", "2", "3"}
    agent = summary["strategies"]["linear/seed0"]
    assert set(agent["beats"]) == {"cash", "buy_and_hold", "trend"}
    # every strategy traded the same hours: the agent's curve is as long as buy-and-hold's
    assert agent["folds"][0]["hours"] == summary["strategies"]["buy_and_hold"]["folds"][0]["hours"]
    text = run.report.read_text()
    assert "buy-and-hold" in text and "linear-DQN" in text and "DSR" in text
    assert {"equity.png", "monthly.png", "fees.png"} <= {p.name for p in run.report.parent.iterdir()}
    assert isinstance(pd.read_parquet(tmp_path / "klines.parquet"), pd.DataFrame)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "rolling"], "--window"),
        (["--embargo-hours", "12"], "feature window"),
    ],
)
def test_bad_walkforward_arguments_exit_non_zero_with_one_line(args: list[str], message: str) -> None:
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "klinestream.cli", "walkforward", *args, "--data-dir", str(repo), "--no-tracking"],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
