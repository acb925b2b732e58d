"""Experiments: train → save → evaluate → plot, for one run or the reference protocol over seeds.

Used by ``klinestream train|evaluate`` and ``bench/reference_protocol.py`` (which writes
docs/results.md).
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from models.feature_sets import DEFAULT_FEATURE_SET
from models.policy import Policy
from pipelines.dataset import TimeRange, build_dataset
from pipelines.evaluate import evaluate_policy
from pipelines.plots import plot_report
from pipelines.train import ProgressFn, default_configs, train_agent

logger = logging.getLogger(__name__)

#: The reference system's Table I (January 2023, BTCUSDT, unit accounting, no fees).
REFERENCE_TABLE = {
    "linear": {"final_profit": 15_774.90, "n_buys": 559, "n_sells": 556},
    "lstm": {"final_profit": 11_772.80, "n_buys": 577, "n_sells": 575},
}


def run_training(
    klines: pd.DataFrame,
    variant: str,
    seed: int,
    train: TimeRange,
    test: TimeRange | None,
    out_dir: Path,
    device: str = "cpu",
    total_env_steps: int | None = None,
    fee_rate: float = 0.001,
    slippage_bps: float = 0.0,
    progress: ProgressFn | None = None,
    reward: str = "reference",
    threads: int | None = None,
    feature_set: str = DEFAULT_FEATURE_SET,
) -> dict[str, Any]:
    """Train one agent, save its policy (and checkpoint) under ``out_dir``, evaluate it on ``test``."""
    agent_config, env_config, train_config = default_configs(variant, seed, device, reward)
    if total_env_steps is not None:
        train_config = replace(train_config, total_env_steps=total_env_steps)
    if threads is not None:
        train_config = replace(train_config, threads=threads)
    dataset = build_dataset(klines, train, feature_set=feature_set)
    result = train_agent(dataset, train, agent_config, env_config, train_config, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.policy.save(out_dir / "policy")
    result.agent.save_checkpoint(out_dir / "checkpoint.pt")
    summary: dict[str, Any] = {
        "variant": variant,
        "seed": seed,
        "reward": reward,
        "feature_set": feature_set,
        "n_features": dataset.spec.n_features,
        "train": str(train),
        "train_seconds": result.seconds,
        "env_steps": result.env_steps,
        "updates": result.updates,
        "env_steps_per_second": result.steps_per_second,
    }
    if test is not None:
        summary["test"] = str(test)
        summary.update(evaluate_and_plot(result.policy, klines, test, out_dir, fee_rate, slippage_bps))
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


def evaluate_and_plot(
    policy: Policy,
    klines: pd.DataFrame,
    test: TimeRange,
    out_dir: Path,
    fee_rate: float = 0.001,
    slippage_bps: float = 0.0,
) -> dict[str, Any]:
    """Evaluate ``policy`` on ``test``; write the plots into ``out_dir``; return the metrics."""
    report = evaluate_policy(policy, klines, test, fee_rate, slippage_bps)
    plots = plot_report(report, out_dir, f"{policy.variant}-DQN {test}")
    return {
        "hours": report["hours"],
        "agent": report["agent"],
        "buy_and_hold": report["buy_and_hold"],
        "plots": [str(p) for p in plots],
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(values: list[float], money: bool = False, pct: bool = False, signed: bool = True) -> str:
    mean, std = mean_std(values)
    if pct:
        return f"{mean * 100:{'+' if signed else ''}.2f}% ± {std * 100:.2f}"
    if money:
        return f"${mean:,.2f} ± {std:,.2f}"
    return f"{mean:.2f} ± {std:.2f}"


def results_tables(runs: list[dict[str, Any]]) -> list[str]:
    """Markdown tables: unit accounting beside Table I, portfolio accounting with/without fees."""
    lines = [
        "### Unit accounting (no fees), beside the reference Table I",
        "",
        "| model | final profit (mean ± std) | #buys | #sells | reference profit | reference buys / sells |",
        "|---|---|---|---|---|---|",
    ]
    variants = sorted({r["variant"] for r in runs})
    for variant in variants:
        unit = [r["agent"]["unit"] for r in runs if r["variant"] == variant]
        ref = REFERENCE_TABLE.get(variant, {})
        seeds = f"{len(unit)} seed{'s' if len(unit) > 1 else ''}"
        lines.append(
            f"| {variant}-DQN ({seeds}) | {_fmt([m['final_profit'] for m in unit], money=True)} "
            f"| {_fmt([m['n_buys'] for m in unit])} | {_fmt([m['n_sells'] for m in unit])} "
            f"| ${ref.get('final_profit', float('nan')):,.2f} | {ref.get('n_buys')} / {ref.get('n_sells')} |"
        )
    bh = runs[0]["buy_and_hold"]["unit"]
    lines.append(
        f"| buy-and-hold ({bh['n_buys']} units) | ${bh['final_profit']:,.2f} | {bh['n_buys']} | {bh['n_sells']} | | |"
    )
    for name, label in (("portfolio_fees", "with 0.1% fee per side"), ("portfolio_no_fees", "without fees")):
        lines += [
            "",
            f"### Portfolio accounting, {label}",
            "",
            "| model | total return | Sharpe (annualised) | max drawdown | #trades |",
            "|---|---|---|---|---|",
        ]
        for variant in variants:
            ms = [r["agent"][name] for r in runs if r["variant"] == variant]
            lines.append(
                f"| {variant}-DQN | {_fmt([m['total_return'] for m in ms], pct=True)} "
                f"| {_fmt([m['sharpe'] for m in ms])} "
                f"| {_fmt([m['max_drawdown'] for m in ms], pct=True, signed=False)} "
                f"| {_fmt([m['n_trades'] for m in ms])} |"
            )
        bh = runs[0]["buy_and_hold"][name]
        lines.append(
            f"| buy-and-hold | {bh['total_return'] * 100:+.2f}% | {bh['sharpe']:.2f} "
            f"| {bh['max_drawdown'] * 100:.2f}% | {bh['n_trades']} |"
        )
    return lines
