"""The retrain pipeline behind the ``dqn_retrain`` DAG, as plain functions (one per DAG task).

plan the ranges → build snapshot (validated lake only) → train each variant (its seeds as one batched
ensemble, one MLflow run per seed) → evaluate on the holdout (metrics + plots into the runs; the seed with
the best in-sample Sharpe is kept) → register the kept run's pyfunc as a new version (tag ``variant``,
alias ``challenger``) → gate each new version against the champion and a baseline on the same holdout.

**Rolling windows** (:func:`plan_ranges`): unless the run pins them, the holdout is the last
``holdout_days`` of validated klines up to the run's data-interval end (the newest hour every context
symbol has), and training is the ``train_months`` calendar months before an embargo of at least the
feature window plus one hour (the walk-forward's rule, :func:`pipelines.walkforward.folds.min_embargo_hours`),
so no training sample's window, reward or next state reaches a holdout hour. The ranges, the embargo and a
content hash of the snapshot are MLflow params of every run.

Tasks exchange small dicts of paths, run ids and version numbers (XCom-sized), never frames or models.
Files live under ``<KLINESTREAM_HOME>/retrain/<dag run id>/``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
from models.policy import Policy
from models.settings import Settings
from models.time_range import TimeRange, parse_range, parse_time
from pipelines.dataset import build_dataset
from pipelines.defaults import Configuration, ProjectDefaults, TrainingDefaults, default_configuration, load_defaults
from pipelines.evaluate import evaluate_policy
from pipelines.promotion import HoldoutMetrics, gate_version
from pipelines.retrain_config import RetrainConfig
from pipelines.train import train_ensemble
from pipelines.walkforward.folds import add_months, iso, min_embargo_hours

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


DAY_MS = 24 * HOUR_MS
#: How many of a symbol's newest lake days are searched for its latest validated kline.
LOOKBACK_DAYS = 45


def validated_until(settings: Settings, until_ms: int) -> int:
    """End (exclusive, ms) of the newest hour before ``until_ms`` that every context symbol has in the
    validated lake; an error names a symbol without any."""
    ends = []
    until_ms -= until_ms % HOUR_MS  # only hours closed by then
    last_day = lake.day_of(until_ms - 1)
    for symbol in settings.symbols:
        days = [p.date for p in lake.list_partitions(settings.lake_root, "validated", symbol) if p.date <= last_day]
        latest = None
        for day in reversed(days[-LOOKBACK_DAYS:]):
            start = parse_time(day)
            frame = lake.read_range(settings.lake_root, "validated", [symbol], start, min(start + DAY_MS, until_ms))
            if len(frame):
                latest = int(frame["open_time"].max())
                break
        if latest is None:
            raise PermanentError(
                f"validated lake {settings.lake_root} has no {symbol} klines before {iso(until_ms)}: run the "
                "klines_backfill DAG (or `klinestream backfill`) first"
            )
        ends.append(latest + HOUR_MS)
    return min(ends)


@dataclass(frozen=True)
class RetrainRanges:
    """The ranges of one retrain and where they came from."""

    train: TimeRange
    test: TimeRange
    embargo_hours: int
    source: str
    """"run" (rolling: from the run's data-interval end and the lake) or "params" (pinned in the UI)."""
    interval_end_ms: int

    def params(self) -> dict[str, Any]:
        """The MLflow params of the ranges."""
        return {"data.train_range": str(self.train), "data.test_range": str(self.test),
                "data.embargo_hours": self.embargo_hours, "data.ranges_from": self.source,
                "data.interval_end": iso(self.interval_end_ms)}  # fmt: skip


def _range(start_ms: int, end_ms: int) -> TimeRange:
    return TimeRange(start_ms, end_ms, f"{iso(start_ms)}:{iso(end_ms)}")


def plan_ranges(settings: Settings, config: RetrainConfig, interval_end_ms: int) -> RetrainRanges:
    """The holdout and training ranges of a run whose data interval ends at ``interval_end_ms``."""
    needed = min_embargo_hours()
    embargo = needed if config.embargo_hours is None else config.embargo_hours
    if embargo < needed:
        raise PermanentError(f"embargo_hours={embargo} is shorter than the feature window plus one hour ({needed} h)")
    if config.test_range is not None:
        test, source = config.test_range, "params"
    else:
        end = validated_until(settings, interval_end_ms)
        test, source = _range(end - config.holdout_days * DAY_MS, end), "run"
    train = config.train_range
    if train is None:
        train_end = test.start_ms - embargo * HOUR_MS
        train = _range(add_months(train_end, -config.train_months), train_end)
    else:  # both pinned by a person: kept as given, the gap logged as the embargo (and warned about)
        if train.end_ms > test.start_ms:
            raise PermanentError(f"train_range {train} overlaps the test_range {test}")
        embargo = (test.start_ms - train.end_ms) // HOUR_MS
        if embargo < needed:
            log.warning("pinned train_range %s ends %d h before test_range %s, less than the feature window plus "
                        "one hour (%d h): its last samples' windows and rewards reach into the holdout", train,
                        embargo, test, needed)  # fmt: skip
    ranges = RetrainRanges(train, test, embargo, source, interval_end_ms)
    log.info("retrain ranges train=%s test=%s embargo_hours=%d from=%s", train, test, embargo, source)
    return ranges


def with_ranges(config: RetrainConfig, snapshot: Mapping[str, Any]) -> RetrainConfig:
    """``config`` with the ranges the snapshot was planned with."""
    return replace(config, train_range=parse_range(snapshot["train_range"]),
                   test_range=parse_range(snapshot["test_range"]))  # fmt: skip


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a kline frame's content (rows sorted by symbol and hour; independent of file encoding)."""
    ordered = frame.sort_values(["symbol", "open_time"], kind="stable").reset_index(drop=True)
    return hashlib.sha256(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes()).hexdigest()


def build_snapshot(settings: Settings, config: RetrainConfig, work: Path, interval_end_ms: int) -> dict[str, Any]:
    """Plan the ranges, then freeze the klines of the run (train start − history … test end) into one
    Parquet file; returns its path, counts, the ranges and the content hash."""
    ranges = plan_ranges(settings, config, interval_end_ms)
    train, test = ranges.train, ranges.test
    start = min(train.start_ms, test.start_ms) - history_pad_hours(settings, config) * HOUR_MS
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
    digest = frame_digest(frame)
    log.info("snapshot path=%s rows=%d per_symbol=%s sha256=%s", path, len(frame), counts, digest)
    return {"klines": str(path), "rows": len(frame), "per_symbol": {str(k): int(v) for k, v in counts.items()},
            "train_range": str(train), "test_range": str(test), "embargo_hours": ranges.embargo_hours,
            "ranges_from": ranges.source, "interval_end": iso(interval_end_ms), "sha256": digest,
            "params": {**ranges.params(), "data.snapshot_sha256": digest}}  # fmt: skip


def interval_end_ms(data_interval_end: datetime | None, run_after: datetime | None = None) -> int:
    """The run's data-interval end in ms (its run-after time, or now, when it has no data interval)."""
    moment = data_interval_end or run_after or datetime.now(UTC)
    return int(moment.timestamp() * 1000)


#: Airflow's run type of a run that new validated klines (the lake asset's events) triggered.
ASSET_TRIGGERED = "asset_triggered"


def retrain_due(run_type: str, newest_ms: int, last_holdout_end_ms: int | None, min_new_days: int) -> tuple[bool, str]:
    """Whether a run retrains, and why. Weekly (scheduled) and manual runs always do; a run triggered by new
    validated klines only when at least ``min_new_days`` of them lie after the last successful retrain's
    holdout end (``newest_ms``: end of the newest hour every context symbol has)."""
    if run_type != ASSET_TRIGGERED:
        return True, f"{run_type} run: retrains whatever landed"
    if last_holdout_end_ms is None:
        return True, "no successful rolling retrain yet"
    new_days = (newest_ms - last_holdout_end_ms) / DAY_MS
    due = new_days >= min_new_days
    return due, (f"{new_days:.2f} days of new validated klines since the last retrain's holdout end "
                 f"{iso(last_holdout_end_ms)} {'>=' if due else '<'} min_new_days {min_new_days}")  # fmt: skip


def read_snapshot(snapshot: Mapping[str, Any]) -> pd.DataFrame:
    return pd.read_parquet(snapshot["klines"])


def history_pad_hours(settings: Settings, config: RetrainConfig) -> int:
    """Hours of klines the snapshot holds before its ranges: enough for the features of the feature set the
    defaults choose for each variant (pipelines/defaults.py)."""
    defaults = load_defaults(settings.defaults_file)
    features = max(default_configuration(v, reward=config.reward, defaults=defaults)[0].features.history_hours
                   for v in config.variants)  # fmt: skip
    return max(HISTORY_PAD_HOURS, features + 48)


def retrain_configuration(
    variant: str, seed: int, config: RetrainConfig, device: str, fee_rate: float = DEFAULT_FEE_RATE,
    slippage_bps: float = 0.0, defaults: ProjectDefaults | None = None,
) -> tuple[Configuration, TrainingDefaults]:  # fmt: skip
    """The project's default configuration (pipelines/defaults.py, or ``defaults``) for the run's reward, fee
    and slippage with the run's agent options (models/options.py) on top, scaled down when the run asks for
    fewer episodes, and the defaults it came from."""
    configuration, chosen = default_configuration(variant, seed, device, config.reward, defaults, fee_rate,
                                                  slippage_bps, config.options)  # fmt: skip
    env, train = configuration.env, configuration.train
    if config.episode_hours:
        env = replace(env, episode_hours=config.episode_hours)
    if config.n_envs:
        train = replace(train, n_envs=config.n_envs)
    configuration = replace(configuration, env=env, train=train)
    if config.episodes:
        configuration = configuration.shortened(config.episodes * env.episode_hours * train.n_envs)
    return configuration, chosen


def train_configs(
    variant: str, seed: int, config: RetrainConfig, device: str, fee_rate: float = DEFAULT_FEE_RATE,
    slippage_bps: float = 0.0, defaults: ProjectDefaults | None = None,
) -> tuple[AgentConfig, EnvConfig, TrainConfig]:  # fmt: skip
    """The agent, env and train configs of :func:`retrain_configuration`."""
    configuration = retrain_configuration(variant, seed, config, device, fee_rate, slippage_bps, defaults)[0]
    return configuration.agent, configuration.env, configuration.train


def train_variant(
    settings: Settings, config: RetrainConfig, snapshot: Mapping[str, Any], variant: str, work: Path,
    dag_run_id: str = "",
) -> dict[str, Any]:  # fmt: skip
    """Train ``variant``'s seeds as one batched ensemble; each seed is one MLflow run (its params, history,
    metrics and configs). Returns the runs (ids, policy dirs)."""
    config = with_ranges(config, snapshot)
    assert config.train_range is not None and config.test_range is not None
    klines = read_snapshot(snapshot)
    train_range, ranges = config.train_range, (str(config.train_range), str(config.test_range))
    configuration, chosen = retrain_configuration(variant, config.seeds[0], config, settings.device,
                                                  settings.fee_rate, settings.slippage_bps,
                                                  load_defaults(settings.defaults_file))  # fmt: skip
    agent_config, env_config, train_config = configuration.agent, configuration.env, configuration.train
    features = configuration.features
    dataset = build_dataset(klines, train_range, settings.symbols, settings.traded_symbol, features.window,
                            feature_set=features.set)  # fmt: skip
    results = train_ensemble(dataset, train_range, agent_config, env_config, train_config, seeds=config.seeds)
    tracking.use_experiment(settings.mlflow_tracking_uri, tracking.TRAINING_EXPERIMENT)
    runs = []
    for seed, result in zip(config.seeds, results, strict=True):
        member_train = replace(train_config, seed=seed)
        tags = tracking.run_tags(variant, seed, *ranges)
        tags["dag_run_id"] = dag_run_id
        with mlflow.start_run(run_name=f"{variant}-seed{seed}", tags=tags) as run:
            result.policy.metadata["defaults"] = chosen.metadata()
            policy_dir = result.policy.save(work / variant / f"seed{seed}" / "policy")
            figures = {**tracking.training_figures(result.seconds, result.env_steps, result.updates),
                       "train.ensemble_size": float(len(results))}  # fmt: skip
            tracking.log_training((agent_config, env_config, member_train), result.policy, result.history, figures,
                                  ranges, extra=config.to_dict())  # fmt: skip
            mlflow.log_params({**snapshot["params"], **chosen.log_params()})
        runs.append({"seed": seed, "run_id": run.info.run_id, "policy_dir": str(policy_dir)})
    return {"variant": variant, "runs": runs}


def evaluate_variant(settings: Settings, config: RetrainConfig, snapshot: Mapping[str, Any],
                     trained: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Evaluate every seed on the holdout (logged to its run); keep the best seed in-sample."""
    config = with_ranges(config, snapshot)
    assert config.train_range is not None and config.test_range is not None
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
    config = with_ranges(config, snapshot)
    assert config.test_range is not None
    klines = read_snapshot(snapshot)
    upto = klines[klines["open_time"] < config.test_range.end_ms]
    tracking.use_experiment(settings.mlflow_tracking_uri, tracking.TRAINING_EXPERIMENT)
    with mlflow.start_run(run_id=evaluated["run_id"]):
        model_uri = tracking.log_policy_model(evaluated["policy_dir"], upto)
    tags = {"variant": evaluated["variant"], "seed": str(evaluated["seed"]), "run_id": evaluated["run_id"],
            "train_range": str(config.train_range), "test_range": str(config.test_range),
            "dag_run_id": dag_run_id, "snapshot_sha256": str(snapshot["sha256"])}  # fmt: skip
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
    config = with_ranges(config, snapshot)
    assert config.test_range is not None
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


def retrained_extra(
    settings: Settings, snapshot: Mapping[str, Any], dag_run_id: str, decisions: list[dict[str, Any]]
) -> dict[str, Any]:
    """The extra of the RETRAINED asset event a successful retrain publishes (what ``due`` reads next time),
    naming the registered model it retrained."""
    test = parse_range(str(snapshot["test_range"]))
    return {"model": settings.mlflow_model_name, "holdout_end": iso(test.end_ms), "holdout_end_ms": test.end_ms,
            "test_range": str(snapshot["test_range"]), "train_range": str(snapshot["train_range"]),
            "ranges_from": str(snapshot["ranges_from"]), "snapshot_sha256": str(snapshot["sha256"]),
            "dag_run_id": dag_run_id, "promoted": [int(d["version"]) for d in decisions if d["promoted"]]}  # fmt: skip


def due_from_events(settings: Settings, config: RetrainConfig, run_type: str, extras: list[Mapping[str, Any]]) -> bool:
    """:func:`retrain_due` for a run, the last rolling retrain's holdout end taken from the RETRAINED asset
    events' ``extras`` of this settings' registered model (pinned-range retrains, and the retrains of another
    model sharing the Airflow, do not count); logs the reason."""
    name = settings.mlflow_model_name
    ends = [int(e["holdout_end_ms"]) for e in extras
            if e.get("ranges_from") == "run" and "holdout_end_ms" in e and e.get("model", name) == name]  # fmt: skip
    last = max(ends, default=None)
    checks = run_type == ASSET_TRIGGERED and last is not None
    newest = validated_until(settings, int(datetime.now(UTC).timestamp() * 1000)) if checks else 0
    due, reason = retrain_due(run_type, newest, last, config.min_new_days)
    log.info("retrain due=%s: %s", due, reason)
    return due
