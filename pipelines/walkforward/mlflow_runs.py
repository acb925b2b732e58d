"""The walk-forward in MLflow: one parent run, one nested run per fold. It registers nothing.

- parent run (experiment :data:`EXPERIMENT`): the config and the number of trials as params; the
  stitched figures of every strategy (``<strategy>.<figure>``, e.g. ``buy_and_hold.sharpe``,
  ``linear/seed0.dsr``) and of each variant over its seeds (``linear.mean.total_return``) as metrics;
  the report folder (Markdown, stitched equity against the baselines, per-month bars, fee
  sensitivity) and ``summary.json`` as artifacts;
- nested run per fold: the fold's ranges as params, every strategy's figures on that test month as
  metrics, and a plot of that month's equity curves.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import numpy as np

from adapters.mlflow import tracking
from pipelines.walkforward.backtests import BASELINES
from pipelines.walkforward.summary import STITCHED_FILE, SUMMARY_FILE

log = logging.getLogger(__name__)

EXPERIMENT = "klinestream-walkforward"
FIGURES = ("total_return", "sharpe", "sortino", "max_drawdown", "turnover", "fees", "n_trades")
STITCHED = (*FIGURES, "sharpe_ci_low", "sharpe_ci_high", "psr", "dsr", "turnover_per_month", "fees_per_month")


def _metrics(prefix: str, figures: dict[str, Any], keys: tuple[str, ...]) -> dict[str, float]:
    return {f"{prefix}.{k}": float(figures[k]) for k in keys if k in figures and math.isfinite(float(figures[k]))}


def parent_metrics(summary: dict[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {"n_trials": float(summary["n_trials"])}
    for name, strategy in summary["strategies"].items():
        metrics.update(_metrics(name, strategy["stitched"], STITCHED))
        for m, fee in strategy["fees"].items():
            metrics.update(_metrics(f"{name}.fee{m}x", fee, ("total_return", "sharpe")))
    for variant, figures in summary["variants"].items():
        for key, stats in figures.items():
            if isinstance(stats, dict) and "mean" in stats:
                metrics.update(_metrics(f"{variant}.mean", {key: stats["mean"]}, (key,)))
        metrics.update(_metrics(f"{variant}.beats", figures["beats"], tuple(figures["beats"])))
        metrics[f"{variant}.best_seed.dsr"] = float(figures["best_seed"]["dsr"])
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def fold_plot(summary: dict[str, Any], arrays: Any, index: int, path: Path) -> Path:
    """Equity of every strategy over fold ``index``'s test month, each starting at 1."""
    hours = [f["hours"] for f in summary["strategies"]["cash"]["folds"]]
    start = int(sum(hours[:index]))
    span = slice(start, start + int(hours[index]))
    times = arrays["open_time"][span].astype("datetime64[ms]")
    fig, ax = plt.subplots(figsize=(10, 4))
    for name, strategy in summary["strategies"].items():
        curve = arrays[f"{name}|fee1"][span]
        agent = strategy["kind"] != "baseline"
        ax.plot(times, curve / curve[0], linewidth=0.6 if agent else 1.4, alpha=0.6 if agent else 1.0, label=name)
    ax.set_title(f"{summary['folds'][index]['name']}: equity (fees included), each strategy from 1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=3)
    fig.autofmt_xdate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def log_walkforward(
    tracking_uri: str,
    summary: dict[str, Any],
    report_dir: Path,
    work: Path | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Log the parent and nested runs; returns the parent run id."""
    work = work or report_dir.parent
    tracking.use_experiment(tracking_uri, EXPERIMENT)
    config = summary["config"]
    run_tags = {
        "kind": "walkforward",
        "test_range": config["test_range"],
        "git_commit": tracking.git_commit(),
        **(tags or {}),
    }
    with mlflow.start_run(run_name=f"walkforward {config['test_range']}", tags=run_tags) as parent:
        mlflow.log_params(
            {
                f"walkforward.{k}": (",".join(map(str, v)) if isinstance(v, list | tuple) else v)
                for k, v in config.items()
                if k != "options"
            }
            | {f"walkforward.option.{k}": v for k, v in config.get("options", {}).items()}
            | {"walkforward.n_trials": summary["n_trials"]}
        )
        mlflow.log_metrics(parent_metrics(summary))
        mlflow.log_artifacts(str(report_dir), "report")
        mlflow.log_artifact(str(work / SUMMARY_FILE))
        with np.load(work / STITCHED_FILE) as arrays:
            for index, fold in enumerate(summary["folds"]):
                _log_fold(summary, arrays, index, fold, work)
    log.info("walk-forward logged parent_run=%s folds=%d", parent.info.run_id, len(summary["folds"]))
    return str(parent.info.run_id)


def _log_fold(summary: dict[str, Any], arrays: Any, index: int, fold: dict[str, Any], work: Path) -> None:
    tags = {"kind": "walkforward-fold", "fold": str(fold["index"]), "test_range": fold["test"]}
    with mlflow.start_run(run_name=fold["name"], nested=True, tags=tags):
        mlflow.log_params(
            {
                "fold.train_range": fold["train"],
                "fold.test_range": fold["test"],
                "fold.embargo_hours": fold["embargo_hours"],
            }
        )
        metrics: dict[str, float] = {}
        for name, strategy in summary["strategies"].items():
            metrics.update(_metrics(name, strategy["folds"][index], FIGURES))
        for name in BASELINES:
            for variant in summary["config"]["variants"]:
                wins = [s["beats"][name][index] for s in summary["strategies"].values() if s["variant"] == variant]
                metrics[f"{variant}.beats.{name}"] = float(np.mean(wins))
        mlflow.log_metrics(metrics)
        plot = fold_plot(summary, arrays, index, work / "plots" / f"{fold['name']}.png")
        mlflow.log_artifact(str(plot), "plots")
