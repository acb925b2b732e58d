"""Backtest metrics and the train/evaluate command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.config import EnvConfig
from models.env import BUY, SELL
from models.evaluation import EvaluationReport, Metrics, PerAccounting
from pipelines.evaluate import buy_and_hold, max_drawdown, run_backtest, sharpe_ratio

REPO = Path(__file__).resolve().parents[2]


def test_drawdown_and_sharpe_of_a_known_equity_curve() -> None:
    equity = np.array([100.0, 120.0, 90.0, 110.0])
    assert max_drawdown(equity) == pytest.approx(0.25)
    returns = np.array([0.2, -0.25, 110 / 90 - 1])
    assert sharpe_ratio(equity) == pytest.approx(returns.mean() / returns.std() * math.sqrt(24 * 365))
    assert sharpe_ratio(np.full(5, 100.0)) == 0.0


def test_backtest_counts_executed_trades_and_marks_equity_each_hour() -> None:
    close = np.array([100.0, 110.0, 105.0, 120.0])
    result = run_backtest(close, np.ones(4, bool), np.arange(4), np.array([[BUY, SELL, SELL]]), EnvConfig())
    metrics = result.metrics[0]
    assert (metrics.n_buys, metrics.n_sells, metrics.final_profit) == (1, 1, pytest.approx(10.0))
    assert result.equity[0].tolist() == pytest.approx([100_000, 100_010, 100_010, 100_010])
    assert result.buys[0].tolist() == [True, False, False, False]


def test_buy_and_hold_goes_all_in_at_the_first_decision_and_out_at_the_last() -> None:
    close = np.array([100.0, 150.0, 200.0])  # decisions at 100 and 150; the last close only marks
    config = EnvConfig(accounting="portfolio", reward="log_return", capital=1000.0, fee_rate=0.001)
    metrics = buy_and_hold(close, np.ones(3, bool), np.arange(3), config)
    quantity = (1000 / 1.001) / 100
    assert metrics.n_trades == 2
    assert metrics.total_return == pytest.approx(quantity * 150 * 0.999 / 1000 - 1)
    assert metrics.fees == pytest.approx(1000 / 1.001 * 0.001 + quantity * 150 * 0.001)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--variant", "gru", "--train", "2021-01-01:2022-01-01"], "--variant"),
        (["train", "--variant", "linear", "--train", "2021-02-30:2022-01-01"], "--train"),
        (["evaluate", "--model", "/nonexistent", "--test", "2023-01-01:2023-02-01"], "--model"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "klinestream.cli", *args, "--data-dir", str(REPO)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_an_evaluation_report_round_trips_through_its_metrics_json_shape() -> None:
    metrics = Metrics(final_profit=12.5, total_return=0.01, sharpe=1.25, max_drawdown=0.2, n_buys=3, n_sells=2,
                      n_trades=5, fees=0.75)  # fmt: skip
    other = Metrics(**{**metrics.to_dict(), "sharpe": -0.5})
    report = EvaluationReport(744, PerAccounting(metrics, other, metrics), PerAccounting(other, other, metrics))
    data = json.loads(json.dumps(report.to_dict()))
    assert list(data) == ["hours", "agent", "buy_and_hold"]
    assert list(data["agent"]) == ["unit", "portfolio_no_fees", "portfolio_fees"]
    assert data["agent"]["portfolio_no_fees"]["sharpe"] == -0.5
    assert EvaluationReport.from_dict(data) == report
    with pytest.raises(ValueError, match="no curves"):
        report.plot_curves()
