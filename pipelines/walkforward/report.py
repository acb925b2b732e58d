"""The walk-forward report: one Markdown file with PNG plots beside it, readable without any service.

``report.md`` holds the setup, the stitched figures of every strategy (the agents beside cash,
buy-and-hold and the trend rule, losses included), the per-seed and per-month tables, fee sensitivity,
the overfitting statistics and, with the online replay, what online learning did to each variant;
``equity.png`` (stitched equity), ``monthly.png`` (per-month returns) and ``fees.png`` (return at 1×, 2×,
3× the fee) are linked from it. :func:`report_lines` gives the Markdown with the images under any prefix
(to embed a run's report in another page).
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
        if "online" in summary:
            online = np.stack([arrays[f"{variant}/seed{s}/online|fee1"] for s in summary["config"]["seeds"]])
            ax.plot(times, online.mean(axis=0), color=color, linewidth=1.6, linestyle="--",
                    label=f"{variant}-DQN + online learning (mean of seeds)")  # fmt: skip
    ax.set_title("Stitched out-of-sample equity (portfolio accounting, fees included)")
    return _finish(fig, ax, path, "equity (quote)")


def plot_monthly(summary: dict[str, Any], path: Path) -> Path:
    months = [f["month"] for f in summary["folds"]]
    groups = ["buy_and_hold", "trend", *summary["config"]["variants"], *(f"{v}+online" for v in _online(summary))]
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
            color=COLORS.get(group.split("+")[0]),
            hatch="//" if group.endswith("+online") else None,
            label=LABELS.get(
                group, f"{group.replace('+online', '')}-DQN{' + online' if '+' in group else ''} (seed mean, min–max)"
            ),
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
    reward = f"reward `{c['reward']}`" if c.get("reward") else "the default configuration's reward"
    studies = f" (the trials of studies {', '.join(c['studies'])})" if c.get("studies") else ""
    return [
        f"# Walk-forward {c['test_range']}",
        "",
        f"- {len(folds)} folds: test steps of {c['test_months']} month(s) from {folds[0]['month']} to "
        f"{folds[-1]['month']}; {c['window']} training windows of {c['train_months']} months; an embargo of "
        f"{c['embargo_hours']} h between each training window and its test month.",
        f"- Agents: {', '.join(f'{v}-DQN' for v in c['variants'])} × seeds {c['seeds']}, {steps}, {reward}"
        "; each fold's seeds trained together as a batched ensemble; normalisation fitted on "
        "each training window only.",
        f"- Every strategy through the same environment: portfolio accounting, fee {c['fee_rate'] * 100:.2f}% per "
        f"side, slippage {c['slippage_bps']} bps; baselines cash, buy-and-hold and a trend rule (all in while the "
        f"close is above its {c['trend_hours']} h moving average, fixed a priori).",
        f"- Trials counted by the deflated Sharpe: {summary['n_trials']} (variants × seeds × {c['configurations']} "
        f"configuration(s) + {c['extra_trials']} tried elsewhere{studies}); variance of the trials' hourly Sharpe "
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
    rows = [(f"{variant}-DQN", v) for variant, v in summary["variants"].items()]
    rows += [(f"{variant}-DQN + online learning", o["on"]) for variant, o in _online(summary).items()]
    for label, v in rows:
        b = v["beats"]
        lines.append(
            f"| {label} ({len(v['seeds'])} seeds, mean ± std) | {_stats(v['total_return'])} | "
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
        if s["kind"] == "baseline":
            continue
        t = s["stitched"]
        lines.append(
            f"| {name} | {_pct(t['total_return'])} | {_num(t['sharpe'])} [{_num(t['sharpe_ci_low'])}, "
            f"{_num(t['sharpe_ci_high'])}] | {_num(t['sortino'])} | {t['max_drawdown'] * 100:.1f}% | "
            f"{int(t['n_trades'])} | {_num(t['psr'])} | {_num(t['dsr'])} |"
        )
    return [*lines, ""]


def _monthly_table(summary: dict[str, Any]) -> list[str]:
    variants = [*summary["config"]["variants"], *(f"{v}+online" for v in _online(summary))]
    strategies = summary["strategies"]
    names = [*(f"{v}-DQN" for v in summary["config"]["variants"]), *(f"{v}-DQN + online" for v in _online(summary))]
    lines = [
        "## Per month",
        "",
        "| month | buy-and-hold | trend | " + " | ".join(f"{n} mean [min, max]" for n in names) + " |",
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


def _online(summary: dict[str, Any]) -> dict[str, Any]:
    return dict(summary.get("online", {}).get("variants", {}))


def _online_table(summary: dict[str, Any]) -> list[str]:
    if "online" not in summary:
        return []
    online = summary["online"]
    lines = [
        "## Online learning (the stream's trader replayed over each test month)",
        "",
        "Each member's test month traded hour by hour by the stream's own trader "
        "(streaming/online_trader.py through the Spark job's micro-batch processor, streaming/replay.py), "
        "starting flat from the fold's trained model, with the stream's default online settings "
        "(streaming/online_learner.py: target net acts, epsilon 0.01, one RMSprop step of 32 transitions per "
        "hour at lr 1e-4, target synced every 24 steps). Learning off, the trader trades exactly as the "
        f"backtest (largest relative gap over every member and month: {online['max_off_vs_backtest']:.1e}).",
        "",
        "| variant | learning | return (mean ± std) | Sharpe | max DD | months > buy-and-hold | months on > off "
        "| mean monthly gain on − off | updates / month |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, v in online["variants"].items():
        for mode in ("off", "on"):
            f = v[mode]
            extra = (
                f"{v['months_on_beats_off'] * 100:.0f}% | {_pct(v['mean_monthly_gain'])} | {v['updates_per_month']:.0f}"
                if mode == "on"
                else "– | – | 0"
            )
            lines.append(
                f"| {variant}-DQN | {mode} | {_stats(f['total_return'])} | {_num(f['sharpe']['mean'])} ± "
                f"{_num(f['sharpe']['std'])} | {f['max_drawdown']['mean'] * 100:.1f}% | "
                f"{f['beats']['buy_and_hold'] * 100:.0f}% | {extra} |"
            )
    return [*lines, ""]


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


def report_lines(summary: dict[str, Any], images: str = "") -> list[str]:
    """The report's Markdown lines; image links are ``<images><name>.png``."""
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
        *_online_table(summary),
        *NOTES,
        *training,
    ]
    return [line.replace("](", f"]({images}") if line.startswith("![") else line for line in text]


def write_plots(summary: dict[str, Any], directory: Path, work: Path) -> list[Path]:
    """``equity.png``, ``monthly.png`` and ``fees.png`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    with np.load(work / STITCHED_FILE) as arrays:
        equity = plot_equity(summary, arrays, directory / "equity.png")
    return [equity, plot_monthly(summary, directory / "monthly.png"), plot_fees(summary, directory / "fees.png")]


def write_report(summary: dict[str, Any], directory: Path, work: Path | None = None) -> Path:
    """Write ``report.md`` and its plots into ``directory``; returns the Markdown file."""
    write_plots(summary, directory, work or directory.parent)
    path = directory / "report.md"
    path.write_text("\n".join(report_lines(summary)))
    return path
