"""The walk-forward report: one Markdown file with PNG plots beside it, readable without any service.

``report.md`` holds the setup, the stitched figures of every strategy (the agents beside cash,
buy-and-hold and the trend rule, losses included), the per-seed and per-month tables, fee sensitivity
and the overfitting statistics; ``equity.png`` (stitched equity), ``monthly.png`` (per-month returns)
and ``fees.png`` (return at 1×, 2×, 3× the fee) are linked from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipelines.walkforward.backtests import BASELINES
from pipelines.walkforward.summary import STITCHED_FILE

LABELS = {"cash": "cash", "buy_and_hold": "buy-and-hold", "trend": "trend rule"}
COLORS = {"cash": "grey", "buy_and_hold": "black", "trend": "tab:purple", "linear": "tab:blue", "lstm": "tab:orange"}


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%" if np.isfinite(value) else "n/a"


def _num(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "n/a"


def _stats(d: dict[str, float]) -> str:
    return f"{_pct(d['mean'])} ± {d['std'] * 100:.1f}"


def plot_equity(summary: dict[str, Any], arrays: Any, path: Path) -> Path:
    times = arrays["open_time"].astype("datetime64[ms]")
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for name in BASELINES:
        ax.plot(times, arrays[f"{name}|fee1"], color=COLORS[name], linewidth=1.2, label=LABELS[name])
    for variant in summary["config"]["variants"]:
        curves = np.stack([arrays[f"{variant}/seed{s}|fee1"] for s in summary["config"]["seeds"]])
        color = COLORS.get(variant)
        for curve in curves:
            ax.plot(times, curve, color=color, linewidth=0.4, alpha=0.4)
        ax.plot(times, curves.mean(axis=0), color=color, linewidth=1.6, label=f"{variant}-DQN (mean of seeds)")
    ax.set_title("Stitched out-of-sample equity (portfolio accounting, fees included)")
    return _finish(fig, ax, path, "equity (quote)")


def plot_monthly(summary: dict[str, Any], path: Path) -> Path:
    months = [f["month"] for f in summary["folds"]]
    groups = ["buy_and_hold", "trend", *summary["config"]["variants"]]
    width = 0.8 / len(groups)
    x = np.arange(len(months))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    strategies = summary["strategies"]
    for i, group in enumerate(groups):
        if group in BASELINES:
            values = np.array([f["total_return"] for f in strategies[group]["folds"]])
            spread = None
        else:
            seeds = np.array(
                [[f["total_return"] for f in s["folds"]] for s in strategies.values() if s["variant"] == group]
            )
            values = seeds.mean(axis=0)
            spread = np.stack([values - seeds.min(axis=0), seeds.max(axis=0) - values])
        ax.bar(
            x + (i - (len(groups) - 1) / 2) * width,
            values * 100,
            width,
            yerr=None if spread is None else spread * 100,
            color=COLORS.get(group),
            label=LABELS.get(group, f"{group}-DQN (seed mean, min–max)"),
            capsize=2,
        )
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_xticks(x, months, rotation=45)
    ax.set_title("Return per test month (cash = 0)")
    return _finish(fig, ax, path, "return (%)", dates=False)


def plot_fees(summary: dict[str, Any], path: Path) -> Path:
    groups = ["buy_and_hold", "trend", *summary["config"]["variants"]]
    multiples = sorted(summary["strategies"]["cash"]["fees"], key=int)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(multiples)
    x = np.arange(len(groups))
    for i, m in enumerate(multiples):
        values = [
            summary["strategies"][g]["fees"][m]["total_return"]
            if g in BASELINES
            else summary["variants"][g]["fees"][m]["total_return"]
            for g in groups
        ]
        ax.bar(x + (i - (len(multiples) - 1) / 2) * width, np.array(values) * 100, width, label=f"{m}× fee")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_xticks(x, [LABELS.get(g, f"{g}-DQN") for g in groups])
    ax.set_title("Stitched return at 1×, 2× and 3× the fee (agents: mean of seeds)")
    return _finish(fig, ax, path, "return (%)", dates=False)


def _finish(fig: Any, ax: Any, path: Path, ylabel: str, dates: bool = True) -> Path:
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if dates:
        fig.autofmt_xdate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _setup(summary: dict[str, Any]) -> list[str]:
    c, folds = summary["config"], summary["folds"]
    steps = "the default configuration" if not c["steps"] else f"{c['steps']:,} env steps per member (quick run)"
    return [
        f"# Walk-forward {c['test_range']}",
        "",
        f"- {len(folds)} folds: test steps of {c['test_months']} month(s) from {folds[0]['month']} to "
        f"{folds[-1]['month']}; {c['window']} training windows of {c['train_months']} months; an embargo of "
        f"{c['embargo_hours']} h between each training window and its test month.",
        f"- Agents: {', '.join(f'{v}-DQN' for v in c['variants'])} × seeds {c['seeds']}, {steps}, reward "
        f"`{c['reward']}`; each fold's seeds trained together as a batched ensemble; normalisation fitted on "
        "each training window only.",
        f"- Every strategy through the same environment: portfolio accounting, fee {c['fee_rate'] * 100:.2f}% per "
        f"side, slippage {c['slippage_bps']} bps; baselines cash, buy-and-hold and a trend rule (all in while the "
        f"close is above its {c['trend_hours']} h moving average, fixed a priori).",
        f"- Trials counted by the deflated Sharpe: {summary['n_trials']} (variants × seeds × {c['configurations']} "
        f"configuration(s) + {c['extra_trials']} tried elsewhere); variance of the trials' hourly Sharpe "
        f"{summary['trial_sharpe_variance']:.3g}.",
        "",
    ]


def _summary_table(summary: dict[str, Any]) -> list[str]:
    header = (
        "| strategy | return | Sharpe | Sortino | max DD | turnover/month | fees/month | PSR | DSR "
        "| months > cash | > buy-and-hold | > trend |"
    )
    lines = ["## Stitched out-of-sample results", "", header, "|" + "---|" * 12]
    for name in BASELINES:
        s = summary["strategies"][name]["stitched"]
        lines.append(
            f"| {LABELS[name]} | {_pct(s['total_return'])} | {_num(s['sharpe'])} [{_num(s['sharpe_ci_low'])}, "
            f"{_num(s['sharpe_ci_high'])}] | {_num(s['sortino'])} | {s['max_drawdown'] * 100:.1f}% | "
            f"{_num(s['turnover_per_month'])} | {s['fees_per_month'] * 100:.2f}% | {_num(s['psr'])} | – | – | – | – |"
        )
    for variant, v in summary["variants"].items():
        b = v["beats"]
        lines.append(
            f"| {variant}-DQN ({len(v['seeds'])} seeds, mean ± std) | {_stats(v['total_return'])} | "
            f"{_num(v['sharpe']['mean'])} ± {_num(v['sharpe']['std'])} | {_num(v['sortino']['mean'])} | "
            f"{v['max_drawdown']['mean'] * 100:.1f}% | {_num(v['turnover_per_month']['mean'])} | "
            f"{v['fees_per_month']['mean'] * 100:.2f}% | {_num(v['psr']['mean'])} | "
            f"{_num(v['best_seed']['dsr'])} (best seed {v['best_seed']['seed']}) | {b['cash'] * 100:.0f}% | "
            f"{b['buy_and_hold'] * 100:.0f}% | {b['trend'] * 100:.0f}% |"
        )
    return [*lines, "", "![stitched equity](equity.png)", ""]


def _seed_table(summary: dict[str, Any]) -> list[str]:
    lines = [
        "## Every seed",
        "",
        "| agent | return | Sharpe [95% CI] | Sortino | max DD | trades | PSR | DSR |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary["strategies"].items():
        if s["kind"] != "agent":
            continue
        t = s["stitched"]
        lines.append(
            f"| {name} | {_pct(t['total_return'])} | {_num(t['sharpe'])} [{_num(t['sharpe_ci_low'])}, "
            f"{_num(t['sharpe_ci_high'])}] | {_num(t['sortino'])} | {t['max_drawdown'] * 100:.1f}% | "
            f"{int(t['n_trades'])} | {_num(t['psr'])} | {_num(t['dsr'])} |"
        )
    return [*lines, ""]


def _monthly_table(summary: dict[str, Any]) -> list[str]:
    variants = summary["config"]["variants"]
    strategies = summary["strategies"]
    lines = [
        "## Per month",
        "",
        "| month | buy-and-hold | trend | " + " | ".join(f"{v}-DQN mean [min, max]" for v in variants) + " |",
        "|---|---|---|" + "---|" * len(variants),
    ]
    for i, fold in enumerate(summary["folds"]):
        cells = [
            fold["month"],
            _pct(strategies["buy_and_hold"]["folds"][i]["total_return"]),
            _pct(strategies["trend"]["folds"][i]["total_return"]),
        ]
        for variant in variants:
            values = [s["folds"][i]["total_return"] for s in strategies.values() if s["variant"] == variant]
            cells.append(f"{_pct(float(np.mean(values)))} [{_pct(min(values))}, {_pct(max(values))}]")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, "", "![monthly returns](monthly.png)", ""]


def _fee_table(summary: dict[str, Any]) -> list[str]:
    multiples = sorted(summary["strategies"]["cash"]["fees"], key=int)
    lines = [
        "## Fee sensitivity (stitched return, Sharpe)",
        "",
        "| strategy | " + " | ".join(f"{m}× fee" for m in multiples) + " |",
        "|---|" + "---|" * len(multiples),
    ]
    rows = [(LABELS[b], summary["strategies"][b]["fees"]) for b in ("buy_and_hold", "trend")]
    rows += [(f"{v}-DQN (seed mean)", summary["variants"][v]["fees"]) for v in summary["config"]["variants"]]
    for label, fees in rows:
        lines.append(
            f"| {label} | "
            + " | ".join(f"{_pct(fees[m]['total_return'])}, {_num(fees[m]['sharpe'])}" for m in multiples)
            + " |"
        )
    return [*lines, "", "![fee sensitivity](fees.png)", ""]


NOTES = [
    "## How to read it",
    "",
    "- Returns compound the test months (each month's model starts flat; the stitched equity is the product "
    "of the months' growth). Sharpe and Sortino are annualised from hourly returns; the 95% interval is a "
    "circular block bootstrap of the hourly returns (blocks of one day).",
    "- PSR: probability that the true Sharpe is above 0 given the sample's length, skewness and kurtosis. "
    "DSR: the same against the Sharpe that the best of all trials would reach by luck (Bailey & López de "
    "Prado); below 0.95 the result is not distinguishable from selection luck.",
    "- Turnover: traded notional / average equity; fees: fees paid / equity at the start of the month.",
    "",
]


def write_report(summary: dict[str, Any], directory: Path, work: Path | None = None) -> Path:
    """Write ``report.md`` and its plots into ``directory``; returns the Markdown file."""
    directory.mkdir(parents=True, exist_ok=True)
    work = work or directory.parent
    with np.load(work / STITCHED_FILE) as arrays:
        plot_equity(summary, arrays, directory / "equity.png")
    plot_monthly(summary, directory / "monthly.png")
    plot_fees(summary, directory / "fees.png")
    t = summary["training"]
    training = [
        "## Training",
        "",
        f"{t['tasks']} tasks (fold × variant, each one ensemble of the seeds): "
        f"{t['train_seconds']:.0f} s of training in total, {t['env_steps']:,} env steps "
        f"({t['env_steps_per_second']:,.0f} env steps/s per task).",
        "",
    ]
    text = [
        *_setup(summary),
        *_summary_table(summary),
        *_seed_table(summary),
        *_monthly_table(summary),
        *_fee_table(summary),
        *NOTES,
        *training,
    ]
    path = directory / "report.md"
    path.write_text("\n".join(text))
    return path
