"""Experiments: train → save → evaluate → plot, for one run or the reference protocol over seeds.

Used by ``klinestream train|evaluate`` and ``bench/reference_protocol.py`` (which writes
docs/results.md).
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from models.config import AgentConfig, EnvConfig, TrainConfig
from models.evaluation import EvaluationReport, Metrics, ReportedAccounting
from models.options import parse_options
from models.policy import Policy
from models.time_range import TimeRange
from pipelines.dataset import build_dataset
from pipelines.defaults import ProjectDefaults, default_configuration
from pipelines.evaluate import evaluate_policy
from pipelines.plots import plot_report
from pipelines.train import ProgressFn, train_agent

logger = logging.getLogger(__name__)

#: The reference system's Table I (January 2023, BTCUSDT, unit accounting, no fees).
REFERENCE_TABLE = {
    "linear": {"final_profit": 15_774.90, "n_buys": 559, "n_sells": 556},
    "lstm": {"final_profit": 11_772.80, "n_buys": 577, "n_sells": 575},
}


@dataclass(frozen=True)
class RunSummary:
    """One training run, as its metrics.json records it."""

    variant: str
    seed: int
    reward: str
    train: str
    train_seconds: float
    env_steps: int
    updates: int
    env_steps_per_second: float
    test: str | None = None
    report: EvaluationReport | None = None
    """The evaluation on ``test`` (None without a test range)."""
    plots: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Other keys of the file (bench/reference_protocol.py adds the machine load and threads of the run)."""
    configs: tuple[AgentConfig, EnvConfig, TrainConfig] | None = field(default=None, repr=False, compare=False)
    """The configs the run trained with (in memory only: metrics.json does not carry them)."""
    history: tuple[Mapping[str, float], ...] = field(default=(), repr=False, compare=False)
    """The training history (loss, epsilon... per logged step; in memory only, like ``configs``)."""

    @property
    def evaluation(self) -> EvaluationReport:
        if self.report is None:
            raise ValueError(f"run {self.variant} seed {self.seed} was not evaluated (no test range)")
        return self.report

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _TRAINING_KEYS}
        if self.test is not None:
            out["test"] = self.test
            out.update(self.report.to_dict() if self.report is not None else {})
            out["plots"] = list(self.plots)
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        known = {*_TRAINING_KEYS, "test", "plots", "hours", "agent", "buy_and_hold"}
        return cls(
            **{name: data[name] for name in _TRAINING_KEYS},
            test=data.get("test"),
            report=EvaluationReport.from_dict(data) if "agent" in data else None,
            plots=tuple(data.get("plots", ())),
            extra={k: v for k, v in data.items() if k not in known},
        )


_TRAINING_KEYS = ("variant", "seed", "reward", "train", "train_seconds", "env_steps", "updates", "env_steps_per_second")


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
    slippage_bps: float = EnvConfig.slippage_bps,
    progress: ProgressFn | None = None,
    reward: str | None = None,
    threads: int | None = None,
    feature_set: str | None = None,
    options: Mapping[str, Any] | None = None,
    defaults: ProjectDefaults | None = None,
) -> RunSummary:
    """Train one agent, save its policy (and checkpoint) under ``out_dir``, evaluate it on ``test``;
    writes ``out_dir/metrics.json``. ``reward`` and ``feature_set`` default to the project's defaults
    (pipelines/defaults.py, or ``defaults``); ``options``: models.options on top of them. The policy's
    metadata records where the defaults came from."""
    configuration, chosen = default_configuration(variant, seed, device, reward, defaults, fee_rate, slippage_bps,
                                                  options)  # fmt: skip
    agent_config, env_config, train_config = configuration.agent, configuration.env, configuration.train
    if total_env_steps is not None:
        train_config = replace(train_config, total_env_steps=total_env_steps)
    if threads is not None:
        train_config = replace(train_config, threads=threads)
    feature_set = feature_set or configuration.features.set
    dataset = build_dataset(klines, train, window=configuration.features.window, feature_set=feature_set)
    result = train_agent(dataset, train, agent_config, env_config, train_config, progress)
    result.policy.metadata["defaults"] = chosen.metadata()
    out_dir.mkdir(parents=True, exist_ok=True)
    result.policy.save(out_dir / "policy")
    result.agent.save_checkpoint(out_dir / "checkpoint.pt")
    summary = RunSummary(variant, seed, env_config.reward, str(train), result.seconds, result.env_steps,
                         result.updates, result.steps_per_second,
                         extra={"feature_set": feature_set, "n_features": dataset.spec.n_features,
                                "options": parse_options(options or {}), "defaults": chosen.log_params()},
                         configs=(agent_config, env_config, train_config), history=tuple(result.history))  # fmt: skip
    if test is not None:
        report, plots = evaluate_and_plot(result.policy, klines, test, out_dir, fee_rate, slippage_bps)
        summary = replace(summary, test=str(test), report=report, plots=tuple(str(p) for p in plots))
    (out_dir / "metrics.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return summary


def evaluate_and_plot(
    policy: Policy,
    klines: pd.DataFrame,
    test: TimeRange,
    out_dir: Path,
    fee_rate: float = 0.001,
    slippage_bps: float = EnvConfig.slippage_bps,
) -> tuple[EvaluationReport, list[Path]]:
    """Evaluate ``policy`` on ``test``; write the plots into ``out_dir``; return the report and the plots."""
    report = evaluate_policy(policy, klines, test, fee_rate, slippage_bps)
    return report, plot_report(report, out_dir, f"{policy.variant}-DQN {test}")


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


def results_tables(runs: list[RunSummary]) -> list[str]:
    """Markdown tables: unit accounting beside Table I, portfolio accounting with/without fees."""
    lines = [
        "### Unit accounting (no fees), beside the reference Table I",
        "",
        "| model | final profit (mean ± std) | #buys | #sells | reference profit | reference buys / sells |",
        "|---|---|---|---|---|---|",
    ]
    variants = sorted({r.variant for r in runs})
    for variant in variants:
        unit = _agent_metrics(runs, variant, "unit")
        ref = REFERENCE_TABLE.get(variant, {})
        seeds = f"{len(unit)} seed{'s' if len(unit) > 1 else ''}"
        lines.append(
            f"| {variant}-DQN ({seeds}) | {_fmt([m.final_profit for m in unit], money=True)} "
            f"| {_fmt([m.n_buys for m in unit])} | {_fmt([m.n_sells for m in unit])} "
            f"| ${ref.get('final_profit', float('nan')):,.2f} | {ref.get('n_buys')} / {ref.get('n_sells')} |"
        )
    bh = runs[0].evaluation.buy_and_hold.unit
    lines.append(f"| buy-and-hold ({bh.n_buys} units) | ${bh.final_profit:,.2f} | {bh.n_buys} | {bh.n_sells} | | |")
    portfolio: tuple[tuple[ReportedAccounting, str], ...] = (
        ("portfolio_fees", "with 0.1% fee per side"),
        ("portfolio_no_fees", "without fees"),
    )
    for name, label in portfolio:
        lines += [
            "",
            f"### Portfolio accounting, {label}",
            "",
            "| model | total return | Sharpe (annualised) | max drawdown | #trades |",
            "|---|---|---|---|---|",
        ]
        for variant in variants:
            ms = _agent_metrics(runs, variant, name)
            lines.append(
                f"| {variant}-DQN | {_fmt([m.total_return for m in ms], pct=True)} "
                f"| {_fmt([m.sharpe for m in ms])} "
                f"| {_fmt([m.max_drawdown for m in ms], pct=True, signed=False)} "
                f"| {_fmt([m.n_trades for m in ms])} |"
            )
        hold = runs[0].evaluation.buy_and_hold[name]
        lines.append(
            f"| buy-and-hold | {hold.total_return * 100:+.2f}% | {hold.sharpe:.2f} "
            f"| {hold.max_drawdown * 100:.2f}% | {hold.n_trades} |"
        )
    return lines


def _agent_metrics(runs: list[RunSummary], variant: str, accounting: ReportedAccounting) -> list[Metrics]:
    return [r.evaluation.agent[accounting] for r in runs if r.variant == variant]
