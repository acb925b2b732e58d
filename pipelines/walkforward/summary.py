"""The walk-forward's statistics: every strategy per fold and stitched, the variants over their seeds.

Reads what the (fold, variant) tasks wrote (pipelines/walkforward/runner.py), backtests the baselines
on the same test hours, and writes ``summary.json`` (figures) and ``stitched.npz`` (the stitched
equity of every strategy at each fee multiple, and the hours) into the work folder.

Strategies are named ``cash``, ``buy_and_hold``, ``trend`` and ``<variant>/seed<N>``. Every trial
(variant × seed × configuration, plus ``extra_trials``) counts in the deflated Sharpe; the variance of
the trials' Sharpe ratios comes from the agents' stitched returns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.kline import HOUR_MS
from models.policy import Policy
from pipelines.walkforward.backtests import BASELINES, FEE_MULTIPLES, Curve, FoldMarket, baseline_curve
from pipelines.walkforward.folds import Fold, iso
from pipelines.walkforward.runner import (
    CURVES_FILE,
    RESULT_FILE,
    WalkForwardConfig,
    history_hours,
    slice_klines,
)
from pipelines.walkforward.statistics import (
    deflated_sharpe_ratio,
    hourly_returns,
    moments,
    performance,
    probabilistic_sharpe_ratio,
    sharpe,
    sharpe_confidence_interval,
    stitch,
    trials_sharpe_variance,
)

SUMMARY_FILE, STITCHED_FILE = "summary.json", "stitched.npz"
CAPITAL = 100_000.0
AGGREGATED = ("total_return", "sharpe", "sortino", "max_drawdown", "turnover_per_month", "fees_per_month")


@dataclass
class StrategyCurves:
    """One strategy's test curves: ``curves[fee multiple][fold]``."""

    name: str
    kind: str  # "agent" or "baseline"
    curves: dict[int, list[Curve]]
    variant: str = ""
    seed: int = -1


def load_agents(
    config: WalkForwardConfig, work: Path, folds: Sequence[Fold]
) -> tuple[list[StrategyCurves], list[StrategyCurves], dict[str, Any]]:
    """Every (variant, seed)'s curves from the tasks' ``result.json`` + ``curves.npz``; with the online
    replay also each member's curves as the stream's trader traded it with online learning on (strategies
    ``<variant>/seed<N>/online``, variant ``<variant>+online``) and the facts of the replays."""
    agents, online = [], []
    facts: dict[str, Any] = {"off_vs_backtest": 0.0, "updates": {}, "explored": {}}
    for variant in config.variants:
        per_seed: dict[int, dict[int, list[Curve]]] = {s: {m: [] for m in FEE_MULTIPLES} for s in config.seeds}
        learning: dict[int, dict[int, list[Curve]]] = {s: {1: []} for s in config.seeds}
        for fold in folds:
            folder = work / fold.name / variant
            result = json.loads((folder / RESULT_FILE).read_text())
            with np.load(folder / CURVES_FILE) as arrays:
                for member in result["members"]:
                    seed = member["seed"]
                    for m in FEE_MULTIPLES:
                        info = member["curves"][str(m)]
                        curve = Curve(arrays[f"seed{seed}_fee{m}"], info["fees"], info["notional"], info["n_trades"])
                        per_seed[seed][m].append(curve)
                    if config.online_replay:
                        on = member["online"]["on"]
                        equity = arrays[f"seed{seed}_online_on"]
                        learning[seed][1].append(Curve(equity, on["fees"], on["notional"], on["n_trades"]))
                        facts["off_vs_backtest"] = max(facts["off_vs_backtest"], member["online"]["off_vs_backtest"])
                        facts["updates"].setdefault(variant, []).append(on["online_updates"])
                        facts["explored"].setdefault(variant, []).append(on["explored"])
        agents += [StrategyCurves(f"{variant}/seed{s}", "agent", c, variant, s) for s, c in per_seed.items()]
        if config.online_replay:
            online += [
                StrategyCurves(f"{variant}/seed{s}/online", "online", c, f"{variant}+online", s)
                for s, c in learning.items()
            ]
    return agents, online, facts


def load_baselines(
    config: WalkForwardConfig, klines: pd.DataFrame, work: Path, folds: Sequence[Fold]
) -> tuple[list[StrategyCurves], np.ndarray]:
    """The baselines' curves on each fold's test hours (the agents' hours), and the stitched hours."""
    curves: dict[str, dict[int, list[Curve]]] = {k: {m: [] for m in FEE_MULTIPLES} for k in BASELINES}
    hours = []
    pad = history_hours(config) * HOUR_MS
    for fold in folds:
        member_dir = work / fold.name / config.variants[0] / f"seed{config.seeds[0]}" / "policy"
        spec = Policy.load(member_dir).spec  # the agents' feature spec: the same test hours
        market = FoldMarket.from_klines(
            slice_klines(klines, fold.test.start_ms - pad, fold.test.end_ms), spec, fold.test
        )
        hours.append(market.open_time[market.rows])
        for kind in BASELINES:
            for m in FEE_MULTIPLES:
                curves[kind][m].append(
                    baseline_curve(kind, market, config.fee_rate * m, config.slippage_bps, config.trend_hours)
                )
    return [StrategyCurves(k, "baseline", c) for k, c in curves.items()], np.concatenate(hours)


def strategy_figures(
    strategy: StrategyCurves, config: WalkForwardConfig, n_trials: int, variance: float
) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
    """(figures, stitched equity per fee multiple) of one strategy."""
    base = strategy.curves[1]
    folds = [performance(c.equity, c.fees, c.notional, c.n_trades).to_dict() for c in base]
    stitched: dict[int, np.ndarray] = {}
    sensitivity = {}
    for m, curves in strategy.curves.items():
        stitched[m], _ = stitch([c.equity for c in curves], CAPITAL)
        returns = hourly_returns(stitched[m])
        sensitivity[str(m)] = {"total_return": float(stitched[m][-1] / CAPITAL - 1.0), "sharpe": sharpe(returns)}
    _, starts = stitch([c.equity for c in base], CAPITAL)
    scale = starts / CAPITAL  # a fold's quote figures grow with the level it starts from
    fees = float(sum(c.fees * s for c, s in zip(base, scale, strict=True)))
    notional = float(sum(c.notional * s for c, s in zip(base, scale, strict=True)))
    total = performance(stitched[1], fees, notional, sum(c.n_trades for c in base)).to_dict()
    returns = hourly_returns(stitched[1])
    low, high = sharpe_confidence_interval(returns, n_boot=config.bootstrap, block_hours=config.block_hours)
    total.update(
        sharpe_ci_low=low,
        sharpe_ci_high=high,
        psr=probabilistic_sharpe_ratio(returns),
        dsr=deflated_sharpe_ratio(returns, n_trials, variance),
        hourly_sharpe=moments(returns)[0],
        turnover_per_month=float(np.mean([f["turnover"] for f in folds])),
        fees_per_month=float(np.mean([f["fees"] for f in folds])),
    )
    figures = {
        "kind": strategy.kind,
        "variant": strategy.variant,
        "seed": strategy.seed,
        "folds": folds,
        "stitched": total,
        "fees": sensitivity,
    }
    return figures, stitched


def online_figures(config: WalkForwardConfig, figures: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Per variant: online learning on against off (= the agent's backtest) over the same months and seeds."""
    out: dict[str, Any] = {"batch_hours": config.online_batch_hours, "max_off_vs_backtest": facts["off_vs_backtest"]}
    variants: dict[str, Any] = {}
    for variant in config.variants:
        diffs = [
            on["total_return"] - off["total_return"]
            for s in config.seeds
            for off, on in zip(figures[f"{variant}/seed{s}"]["folds"], figures[f"{variant}/seed{s}/online"]["folds"],
                               strict=True)
        ]  # fmt: skip
        updates = facts["updates"].get(variant, [0])
        variants[variant] = {
            "off": variant_figures(variant, {k: v for k, v in figures.items() if v["kind"] == "agent"}),
            "on": variant_figures(f"{variant}+online", {k: v for k, v in figures.items() if v["kind"] == "online"}),
            "months_on_beats_off": float(np.mean([d > 0 for d in diffs])),
            "mean_monthly_gain": float(np.mean(diffs)),
            "updates_per_month": float(np.mean(updates)),
            "explored_per_month": float(np.mean(facts["explored"].get(variant, [0]))),
        }
    out["variants"] = variants
    return out


def beats(agent: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> dict[str, list[bool]]:
    """Per baseline, whether the agent's return beat it in each month (after fees)."""
    return {
        name: [a["total_return"] > b["total_return"] for a, b in zip(agent["folds"], base["folds"], strict=True)]
        for name, base in baselines.items()
    }


def variant_figures(variant: str, agents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean, std, min and max over the variant's seeds; the share of months beating each baseline (all
    seeds pooled); the best seed (highest stitched Sharpe) and its deflated Sharpe."""
    members = [a for a in agents.values() if a["variant"] == variant]
    out: dict[str, Any] = {"seeds": [a["seed"] for a in members]}
    for key in (*AGGREGATED, "psr", "dsr"):
        values = np.array([a["stitched"][key] for a in members], dtype=np.float64)
        out[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
        }
    pooled: dict[str, list[bool]] = {}
    for member in members:
        for name, wins in member["beats"].items():
            pooled.setdefault(name, []).extend(wins)
    out["beats"] = {name: float(np.mean(wins)) for name, wins in pooled.items()}
    best = max(members, key=lambda a: a["stitched"]["sharpe"])
    out["best_seed"] = {"seed": best["seed"], "sharpe": best["stitched"]["sharpe"], "dsr": best["stitched"]["dsr"]}
    out["fees"] = {
        m: {k: float(np.mean([a["fees"][m][k] for a in members])) for k in ("total_return", "sharpe")}
        for m in members[0]["fees"]
    }
    return out


def summarise(
    config: WalkForwardConfig, snapshot: Path | str, work: Path | str, trained: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Compute every figure; write ``summary.json`` and ``stitched.npz`` into ``work``; return the summary."""
    work = Path(work)
    folds = config.folds()
    klines = pd.read_parquet(snapshot)
    agents, online, facts = load_agents(config, work, folds)
    baselines, hours = load_baselines(config, klines, work, folds)
    variance = trials_sharpe_variance(
        [hourly_returns(stitch([c.equity for c in a.curves[1]], CAPITAL)[0]) for a in (*agents, *online)]
    )
    n_trials = config.n_trials
    figures: dict[str, Any] = {}
    arrays: dict[str, Any] = {"open_time": hours}
    for strategy in (*baselines, *agents, *online):
        figures[strategy.name], stitched = strategy_figures(strategy, config, n_trials, variance)
        arrays.update({f"{strategy.name}|fee{m}": equity for m, equity in stitched.items()})
    baseline_figures = {b.name: figures[b.name] for b in baselines}
    for agent in (*agents, *online):
        figures[agent.name]["beats"] = beats(figures[agent.name], baseline_figures)
    agent_figures = {a.name: figures[a.name] for a in agents}
    summary: dict[str, Any] = {
        "config": config.to_dict(),
        "folds": [{**f.to_dict(), "name": f.name, "month": iso(f.test.start_ms)[:7]} for f in folds],
        "n_trials": n_trials,
        "trial_sharpe_variance": variance,
        "strategies": figures,
        "variants": {v: variant_figures(v, agent_figures) for v in config.variants},
        "training": training_figures(trained),
    }
    if config.online_replay:
        summary["online"] = online_figures(config, figures, facts)
    (work / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=float))
    np.savez(work / STITCHED_FILE, **arrays)
    return summary


def training_figures(trained: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Training time and env steps of the tasks (sum over tasks; each task trains one ensemble)."""
    seconds = float(sum(t["seconds"] for t in trained))
    steps = int(sum(t["env_steps"] for t in trained))
    return {
        "tasks": len(trained),
        "train_seconds": seconds,
        "train_cpu_seconds": float(sum(t.get("cpu_seconds", 0.0) for t in trained)),
        "env_steps": steps,
        "env_steps_per_second": steps / seconds if seconds > 0 else 0.0,
    }
