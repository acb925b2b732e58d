"""The retrain pipeline behind the ``dqn_retrain`` DAG, as plain functions (one per DAG task).

build snapshot (validated lake only) → train each variant (one MLflow run per seed) → evaluate on the
holdout (metrics + plots into the runs; the seed with the best in-sample Sharpe is kept) → register
the kept run's pyfunc as a new version (tag ``variant``, alias ``challenger``) → gate each new version
against the champion on the same holdout.

Tasks exchange small dicts of paths, run ids and version numbers (XCom-sized), never frames or models.
Files live under ``<KLINESTREAM_HOME>/retrain/<dag run id>/``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from adapters import lake
from adapters.alerting import build_alert_sink
from adapters.mlflow import tracking
from adapters.mlflow.aliases import set_challenger
from adapters.mlflow.registry import registry_client
from models.config import DEFAULT_FEE_RATE, AgentConfig, EnvConfig, TrainConfig
from models.errors import PermanentError
from models.evaluation import EvaluationReport
from models.features import WARMUP_HOURS
from models.kline import HOUR_MS
from models.options import apply_options
from models.policy import Policy
from models.settings import Settings
from pipelines.dataset import build_dataset
from pipelines.evaluate import evaluate_policy
from pipelines.promotion import HoldoutMetrics, gate_version
from pipelines.retrain_config import RetrainConfig
from pipelines.train import default_configs, train_agent

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "klines.parquet"
#: Hours read before the training range so its first hours have features and a window.
HISTORY_PAD_HOURS = 2 * WARMUP_HOURS + 48


def work_dir(settings: Settings, dag_run_id: str) -> Path:
    """``<home>/retrain/<run id with only safe characters>`` (created)."""
    path = settings.home / "retrain" / re.sub(r"[^A-Za-z0-9_.-]+", "_", dag_run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_validated_klines(settings: Settings, start_ms: int, end_ms: int) -> pd.DataFrame:
    """Klines of the context symbols from the lake's ``validated`` zone; an error names what is missing."""
    frame = lake.read_range(settings.lake_root, "validated", settings.symbols, start_ms, end_ms)
    missing = [s for s in settings.symbols if not (frame["symbol"] == s).any()]
    if missing:
        raise PermanentError(
            f"validated lake {settings.lake_root} has no klines of {missing} in [{start_ms}, {end_ms}): "
            "run the klines_backfill DAG (or `klinestream backfill`) for that range first"
        )
    return frame


def build_snapshot(settings: Settings, config: RetrainConfig, work: Path) -> dict[str, Any]:
    """Freeze the klines of the run (train start − history … test end) into one Parquet file."""
    train, test = config.train_range, config.test_range
    start = min(train.start_ms, test.start_ms) - HISTORY_PAD_HOURS * HOUR_MS
    frame = read_validated_klines(settings, start, max(train.end_ms, test.end_ms))
    for label, time_range in (("train_range", train), ("test_range", test)):
        inside = frame[(frame["open_time"] >= time_range.start_ms) & (frame["open_time"] < time_range.end_ms)]
        missing = [s for s in settings.symbols if not (inside["symbol"] == s).any()]
        if missing:
            raise PermanentError(
                f"validated lake {settings.lake_root} has no klines of {missing} in the {label} {time_range}: "
                "run the klines_backfill DAG (or `klinestream backfill`) for it, or choose another range"
            )
    path = work / SNAPSHOT_FILE
    frame.to_parquet(path, index=False)
    counts = frame.groupby("symbol").size().to_dict()
    log.info("snapshot path=%s rows=%d per_symbol=%s", path, len(frame), counts)
    return {"klines": str(path), "rows": len(frame), "per_symbol": {str(k): int(v) for k, v in counts.items()}}


def read_snapshot(snapshot: Mapping[str, Any]) -> pd.DataFrame:
    return pd.read_parquet(snapshot["klines"])


def train_configs(
    variant: str, seed: int, config: RetrainConfig, device: str, fee_rate: float = DEFAULT_FEE_RATE,
    slippage_bps: float = 0.0,
) -> tuple[AgentConfig, EnvConfig, TrainConfig]:  # fmt: skip
    """The project's default configs for the run's reward, fee and slippage with the run's agent options
    (models/options.py), scaled down when the run asks for fewer episodes."""
    defaults = default_configs(variant, seed, device, config.reward, fee_rate, slippage_bps)
    agent, env, train = apply_options(defaults, config.options)
    if config.episode_hours:
        env = replace(env, episode_hours=config.episode_hours)
    if config.n_envs:
        train = replace(train, n_envs=config.n_envs)
    if config.episodes:
        total = config.episodes * env.episode_hours * train.n_envs
        train = replace(train, total_env_steps=total, learning_starts=min(train.learning_starts, max(1, total // 4)))
        agent = replace(agent, batch_size=min(agent.batch_size, max(32, total // 8)))
    return agent, env, train


def train_variant(
    settings: Settings, config: RetrainConfig, snapshot: Mapping[str, Any], variant: str, work: Path,
    dag_run_id: str = "",
) -> dict[str, Any]:  # fmt: skip
    """Train ``variant`` once per seed; each seed is one MLflow run. Returns the runs (ids, policy dirs)."""
    klines = read_snapshot(snapshot)
    train_range, ranges = config.train_range, (str(config.train_range), str(config.test_range))
    dataset = build_dataset(klines, train_range, settings.symbols, settings.traded_symbol)
    tracking.use_experiment(settings.mlflow_tracking_uri, tracking.TRAINING_EXPERIMENT)
    runs = []
    for seed in config.seeds:
        agent_config, env_config, train_config = train_configs(variant, seed, config, settings.device,
                                                               settings.fee_rate, settings.slippage_bps)  # fmt: skip
        tags = tracking.run_tags(variant, seed, *ranges)
        tags["dag_run_id"] = dag_run_id
        with mlflow.start_run(run_name=f"{variant}-seed{seed}", tags=tags) as run:
            result = train_agent(dataset, train_range, agent_config, env_config, train_config)
            policy_dir = result.policy.save(work / variant / f"seed{seed}" / "policy")
            tracking.log_training((agent_config, env_config, train_config), result.policy, result.history,
                                  tracking.training_figures(result.seconds, result.env_steps, result.updates),
                                  ranges, extra=config.to_dict())  # fmt: skip
        runs.append({"seed": seed, "run_id": run.info.run_id, "policy_dir": str(policy_dir)})
    return {"variant": variant, "runs": runs}


def evaluate_variant(settings: Settings, config: RetrainConfig, snapshot: Mapping[str, Any],
                     trained: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Evaluate every seed on the holdout (logged to its run); keep the best seed in-sample."""
    klines = read_snapshot(snapshot)
    test_range, train_range = config.test_range, config.train_range
    tracking.use_experiment(settings.mlflow_tracking_uri, tracking.TRAINING_EXPERIMENT)
    scored = []
    for run in trained["runs"]:
        policy = Policy.load(run["policy_dir"], device="cpu")
        report = evaluate_policy(policy, klines, test_range, fee_rate=settings.fee_rate,
                                 slippage_bps=settings.slippage_bps)  # fmt: skip
        with mlflow.start_run(run_id=run["run_id"]):
            tracking.log_evaluation(report)
            plots_dir = Path(run["policy_dir"]).parent / "plots"
            tracking.log_plots(_plots(report, plots_dir, trained["variant"], str(config.test_range)))
        in_sample = (
            HoldoutMetrics.from_report(evaluate_policy(policy, klines, train_range, fee_rate=settings.fee_rate)).sharpe
            if len(trained["runs"]) > 1
            else 0.0
        )
        scored.append((in_sample, run, report))
    best_in_sample, best, report = max(scored, key=lambda item: item[0])
    log.info("evaluated variant=%s kept seed=%s in_sample_sharpe=%.3f", trained["variant"], best["seed"],
             best_in_sample)  # fmt: skip
    return {"variant": trained["variant"], **best, "holdout": tracking.holdout_summary(report)}


def _plots(report: EvaluationReport, out_dir: Path, variant: str, test_range: str) -> list[Path]:
    """The evaluation plots (trades on the price, equity curves, unit profit) as PNG files."""
    from pipelines.plots import plot_report  # matplotlib only when plotting

    out_dir.mkdir(parents=True, exist_ok=True)
    return plot_report(report, out_dir, f"{variant}-DQN {test_range}")


def register_variant(settings: Settings, config: RetrainConfig, snapshot: Mapping[str, Any],
                     evaluated: Mapping[str, Any], dag_run_id: str = "") -> dict[str, Any]:  # fmt: skip
    """Log the kept run's pyfunc model, register it as a new version and make it the challenger."""
    klines = read_snapshot(snapshot)
    upto = klines[klines["open_time"] < config.test_range.end_ms]
    tracking.use_experiment(settings.mlflow_tracking_uri, tracking.TRAINING_EXPERIMENT)
    with mlflow.start_run(run_id=evaluated["run_id"]):
        model_uri = tracking.log_policy_model(evaluated["policy_dir"], upto)
    tags = {"variant": evaluated["variant"], "seed": str(evaluated["seed"]), "run_id": evaluated["run_id"],
            "train_range": str(config.train_range), "test_range": str(config.test_range),
            "dag_run_id": dag_run_id}  # fmt: skip
    version = register_challenger(settings, model_uri, tags)
    return {"variant": evaluated["variant"], "version": version, "run_id": evaluated["run_id"], "model_uri": model_uri}


def register_challenger(settings: Settings, model_uri: str, tags: Mapping[str, str]) -> int:
    """Register ``model_uri`` as a new version of the settings' model, with ``tags``, and make it the challenger."""
    name = settings.mlflow_model_name
    version = tracking.register_model(settings.mlflow_tracking_uri, model_uri, name, tags)
    set_challenger(registry_client(settings.mlflow_tracking_uri), name, version)
    return version


def gate_versions(settings: Settings, config: RetrainConfig, snapshot: Mapping[str, Any],
                  registered: list[Mapping[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    """Gate the new versions, oldest first, each against the champion of the moment, on the holdout."""
    name, uri = settings.mlflow_model_name, settings.mlflow_tracking_uri
    if not config.promote:
        client = registry_client(uri)
        for item in registered:
            client.set_model_version_tag(name, str(item["version"]), "gate.decision", "skipped (promote=false)")
        return [{"version": int(item["version"]), "promoted": False, "reason": "promote=false"} for item in registered]
    klines = read_snapshot(snapshot)
    holdout = config.test_range
    results = []
    alerts = build_alert_sink(settings)  # every gate decision is an alert (the log, and Telegram when set)
    try:
        for item in sorted(registered, key=lambda r: int(r["version"])):
            decision = gate_version(uri, name, int(item["version"]), klines, holdout, config.gate, settings.fee_rate,
                                    alerts)  # fmt: skip
            results.append({"version": int(item["version"]), "variant": item["variant"],
                            "promoted": decision.promote, "reason": decision.summary})  # fmt: skip
    finally:
        alerts.close()
    return results
