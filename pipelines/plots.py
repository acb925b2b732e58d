"""Backtest plots (matplotlib, Agg backend) written as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np

from models.evaluation import Backtest, EvaluationReport


def _times(open_time: np.ndarray) -> np.ndarray:
    return open_time.astype("datetime64[ms]")


def plot_trades(open_time: np.ndarray, close: np.ndarray, backtest: Backtest, path: Path, title: str) -> Path:
    """Price with buy (▲) and sell (▼) markers of the first env of ``backtest``."""
    times = _times(open_time)
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(times, close, color="black", linewidth=0.8, label="close")
    buys, sells = backtest.buys[0], backtest.sells[0]
    ax.scatter(times[buys], close[buys], marker="^", color="tab:green", s=14, label=f"buy ({int(buys.sum())})")
    ax.scatter(times[sells], close[sells], marker="v", color="tab:red", s=14, label=f"sell ({int(sells.sum())})")
    return _finish(fig, ax, path, title, "price")


def plot_equity(open_time: np.ndarray, curves: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Equity curves (e.g. agent vs buy-and-hold)."""
    fig, ax = plt.subplots(figsize=(11, 4))
    for label, equity in curves.items():
        ax.plot(_times(open_time), equity, linewidth=1.0, label=label)
    return _finish(fig, ax, path, title, "equity")


def plot_cumulative_profit(
    open_time: np.ndarray, close: np.ndarray, backtest: Backtest, path: Path, title: str
) -> Path:
    """Cumulative profit (equity − capital) of the unit-accounting backtest."""
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(_times(open_time), backtest.equity[0] - backtest.equity[0, 0], linewidth=1.0, label="agent")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    return _finish(fig, ax, path, title, "profit (quote)")


def _finish(fig: Any, ax: Any, path: Path, title: str, ylabel: str) -> Path:
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_report(report: EvaluationReport, directory: Path, name: str) -> list[Path]:
    """The three standard plots of :func:`pipelines.evaluate.evaluate_policy`'s report."""
    series = report.plot_curves()
    open_time, close, agent = series.open_time, series.close, series.agent
    buy_and_hold = close / close[0] * agent.portfolio_fees.equity[0, 0]
    return [
        plot_trades(open_time, close, agent.unit, directory / "trades.png", f"{name}: trades (unit accounting)"),
        plot_equity(
            open_time,
            {
                "agent (0.1% fee)": agent.portfolio_fees.equity[0],
                "agent (no fee)": agent.portfolio_no_fees.equity[0],
                "buy-and-hold": buy_and_hold,
            },
            directory / "equity.png",
            f"{name}: equity, portfolio accounting",
        ),
        plot_cumulative_profit(open_time, close, agent.unit, directory / "profit.png", f"{name}: unit profit"),
    ]
