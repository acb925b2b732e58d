"""Running a walk-forward: the config, the per-(fold, variant) task, and a local parallel driver.

The unit of work is one fold × one variant: the variant's seeds train together as a batched ensemble
(:func:`pipelines.train.train_ensemble`, the training code of ``dqn_retrain``) on the fold's training
window, and each member's policy is backtested on the test month at 1×, 2× and 3× the fee. The
``dqn_walkforward`` DAG maps that task over (fold, variant); :func:`run_walkforward` runs the same tasks
in worker processes here (one torch thread each). Tasks exchange paths, never frames or models:

    <work>/klines.parquet                         the klines of the whole walk-forward (snapshot)
    <work>/<fold name>/<variant>/result.json      per-member fees, notional, trades; training time
    <work>/<fold name>/<variant>/curves.npz       hourly equity of each member at each fee multiple (and, with
                                                  the online replay, as the stream's trader traded it,
                                                  online learning off and on)
    <work>/<fold name>/<variant>/seed<N>/policy/  the member's serving policy (models.policy files)
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.config import AgentConfig, EnvConfig, TrainConfig
from models.errors import PermanentError
from models.features import WARMUP_HOURS
from models.kline import HOUR_MS
from models.networks import NETWORKS
from models.settings import DEFAULT_SYMBOLS, Settings
from models.time_range import parse_range
from pipelines.dataset import MarketDataset, build_dataset
from pipelines.defaults import Configuration, FeatureConfig, TrainingDefaults, default_configuration, load_defaults
from pipelines.train import checked_options, train_ensemble
from pipelines.walkforward.backtests import DEFAULT_TREND_HOURS, fee_rates, policy_curves, portfolio_config
from pipelines.walkforward.folds import Fold, FoldPlan, WindowKind, min_embargo_hours, plan_folds
from pipelines.walkforward.online import OnlineReplay, replay_member

log = logging.getLogger(__name__)

SNAPSHOT_FILE, RESULT_FILE, CURVES_FILE = "klines.parquet", "result.json", "curves.npz"


@dataclass(frozen=True)
class WalkForwardConfig:
    """What one walk-forward does (the CLI's options and the DAG's params)."""

    test_range: str = "2022-01-01:2023-02-01"
    """Test months, START:END (UTC, end excluded); cut into test steps."""
    train_months: int = 12
    """Length of the training window before each test step (sliding), or of the first one (expanding)."""
    window: WindowKind = "sliding"
    """"sliding" (the last train_months) or "expanding" (from the first fold's training start)."""
    embargo_hours: int = min_embargo_hours()
    """Hours between a training window and its test step (at least the feature window + 1 h)."""
    test_months: int = 1
    """Calendar months per test step."""
    variants: tuple[str, ...] = ("linear", "lstm")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int | None = None
    """Env steps per member (None = the default configuration); for quick runs."""
    n_envs: int | None = None
    episode_hours: int | None = None
    reward: str | None = None
    """Training reward; None = the project's defaults' (pipelines/defaults.py: fee-aware ``risk`` unless a study
    chose another). A reward other than the defaults' trains its preset (pipelines.train.default_configs)."""
    defaults_file: str = ""
    """Training defaults file (blank = the committed pipelines/defaults.json; see pipelines/defaults.py)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Agent options (models/options.py) on top of the default configuration, e.g. {"min_hold_hours": 4}."""
    fee_rate: float = 0.001
    slippage_bps: float = 0.0
    trend_hours: int = DEFAULT_TREND_HOURS
    """Moving-average window of the trend baseline, fixed a priori."""
    configurations: int = 1
    """Configurations tried for this walk-forward (each variant × seed × configuration is a trial)."""
    extra_trials: int = 0
    """Trials tried elsewhere (e.g. a hyperparameter search) that the deflated Sharpe must count."""
    studies: tuple[str, ...] = ()
    """Hyperparameter studies whose trials ``extra_trials`` counts (names, for the record)."""
    bootstrap: int = 1000
    block_hours: int = 24
    online_replay: bool = False
    """Replay each member's test month through the stream's trader with online learning off and on (needs
    the replay of the layer above: ``klinestream walkforward`` and the ``dqn_walkforward`` DAG give it)."""
    online_batch_hours: int = 24
    """Hours per micro-batch of the online replay (the trader's decisions do not depend on it; fewer,
    larger batches replay faster)."""
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    traded_symbol: str = "BTCUSDT"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.variants) - set(NETWORKS))
        if unknown or not self.variants:
            raise PermanentError(f"variants must be among {sorted(NETWORKS)}, got {list(self.variants)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise PermanentError(f"seeds must name distinct seeds, got {list(self.seeds)}")
        if self.configurations < 1 or self.extra_trials < 0:
            raise PermanentError("configurations must be >= 1 and extra_trials >= 0")
        if self.steps is not None and self.steps < 1:
            raise PermanentError("steps must be at least 1 (or empty for the default configuration)")
        try:
            object.__setattr__(
                self,
                "options",
                checked_options(self.options, self.variants, self.reward, load_defaults(self.defaults_file or None)),
            )
        except ValueError as error:
            raise PermanentError(f"options: {error}") from None
        if self.online_batch_hours < 1:
            raise PermanentError("online_batch_hours must be at least 1")
        self.plan()  # fail early with a readable error

    def plan(self) -> FoldPlan:
        return FoldPlan(
            parse_range(self.test_range),
            self.train_months,
            self.window,
            self.embargo_hours,
            self.test_months,
        )

    def folds(self) -> list[Fold]:
        return plan_folds(self.plan())

    @property
    def n_trials(self) -> int:
        """Every variant × seed × configuration tried (online learning on is one more configuration; off
        trades exactly as the backtest), plus the trials counted elsewhere."""
        modes = 2 if self.online_replay else 1
        return len(self.variants) * len(self.seeds) * self.configurations * modes + self.extra_trials

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WalkForwardConfig:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        if "options" in values:
            values["options"] = dict(values["options"])
        return cls(**values)


def config_from_params(params: Mapping[str, Any], fee_rate: float = 0.001) -> WalkForwardConfig:
    """A :class:`WalkForwardConfig` from DAG params (lists from JSON; blank or missing means "default")."""
    given = {k: v for k, v in params.items() if v not in (None, "", [])}
    given.setdefault("fee_rate", fee_rate)
    return WalkForwardConfig.from_dict(given)


def work_dir(home: Path, run_id: str) -> Path:
    """``<home>/walkforward/<run id with only safe characters>`` (created)."""
    path = home / "walkforward" / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def history_hours(config: WalkForwardConfig) -> int:
    """Hours of klines read before a range so its first hours have features (of the feature set the defaults
    choose for each variant), states and a trend average."""
    defaults = load_defaults(config.defaults_file or None)
    features = max(default_configuration(v, reward=config.reward, defaults=defaults)[0].features.history_hours
                   for v in config.variants)  # fmt: skip
    return max(2 * WARMUP_HOURS + 48, config.trend_hours + WARMUP_HOURS + 48, features + 48)


def member_configuration(
    variant: str, config: WalkForwardConfig, device: str, threads: int
) -> tuple[Configuration, TrainingDefaults]:
    """The project's default configuration of ``variant`` (pipelines/defaults.py) with the run's fee, slippage
    and options, shortened when ``config.steps`` asks for a quick run, and the defaults it came from."""
    defaults = load_defaults(config.defaults_file or None)
    configuration, chosen = default_configuration(variant, 0, device, config.reward, defaults, config.fee_rate,
                                                  config.slippage_bps, config.options)  # fmt: skip
    env, train = configuration.env, replace(configuration.train, threads=threads)
    if config.episode_hours:
        env = replace(env, episode_hours=config.episode_hours)
    if config.n_envs:
        train = replace(train, n_envs=config.n_envs)
    configuration = replace(configuration, env=env, train=train)
    return (configuration.shortened(config.steps) if config.steps else configuration), chosen


def member_configs(
    variant: str, config: WalkForwardConfig, device: str, threads: int
) -> tuple[AgentConfig, EnvConfig, TrainConfig]:
    """The agent, env and train configs of :func:`member_configuration`."""
    configuration = member_configuration(variant, config, device, threads)[0]
    return configuration.agent, configuration.env, configuration.train


def snapshot_span(config: WalkForwardConfig) -> tuple[int, int]:
    """``[start, end)`` (ms) of the klines the walk-forward reads: the first training window's history to
    the last test hour."""
    folds = config.folds()
    return min(f.train.start_ms for f in folds) - history_hours(config) * HOUR_MS, folds[-1].test.end_ms


def write_snapshot(klines: pd.DataFrame, config: WalkForwardConfig, work: Path) -> Path:
    """The klines of :func:`snapshot_span` as one Parquet file in ``work``."""
    frame = slice_klines(klines, *snapshot_span(config))
    missing = [s for s in config.symbols if not (frame["symbol"] == s).any()]
    if missing:
        raise PermanentError(f"no klines of {missing} between the first training hour and the last test hour")
    work.mkdir(parents=True, exist_ok=True)
    path = work / SNAPSHOT_FILE
    frame.to_parquet(path, index=False)
    return path


def snapshot_from_lake(settings: Settings, config: WalkForwardConfig, work: Path) -> Path:
    """:func:`write_snapshot` of the validated lake's klines (the retrain DAG's reader)."""
    from pipelines.retrain import read_validated_klines

    return write_snapshot(read_validated_klines(settings, *snapshot_span(config)), config, work)


def slice_klines(klines: pd.DataFrame, start_ms: int, end_ms: int) -> pd.DataFrame:
    return klines[(klines["open_time"] >= start_ms) & (klines["open_time"] < end_ms)]


def fold_dataset(
    config: WalkForwardConfig, klines: pd.DataFrame, fold: Fold, features: FeatureConfig | None = None
) -> MarketDataset:
    """The fold's training dataset (of ``features``, default the reference set): klines up to the training
    window's end only (the trainer never sees a later kline), normalisation fitted on the training window."""
    features = features or FeatureConfig()
    start = fold.train.start_ms - history_hours(config) * HOUR_MS
    train_klines = slice_klines(klines, start, fold.train.end_ms)
    return build_dataset(
        train_klines, fold.train, config.symbols, config.traded_symbol, features.window, feature_set=features.set
    )


def train_fold_variant(
    config: WalkForwardConfig,
    snapshot: Path | str,
    fold: Fold,
    variant: str,
    work: Path | str,
    device: str = "cpu",
    threads: int = 1,
    replay: OnlineReplay | None = None,
) -> dict[str, Any]:
    """Train ``variant``'s seeds on ``fold``'s training window (one ensemble), backtest each on the test step
    (and, with ``config.online_replay``, replay it through the stream's trader, online learning off and on)."""
    if config.online_replay and replay is None:
        raise PermanentError("online_replay needs the stream's replay (klinestream walkforward or dqn_walkforward)")
    klines = pd.read_parquet(snapshot)
    pad = history_hours(config) * HOUR_MS
    configuration, chosen = member_configuration(variant, config, device, threads)
    dataset = fold_dataset(config, klines, fold, configuration.features)
    cpu = time.process_time()
    results = train_ensemble(
        dataset, fold.train, configuration.agent, configuration.env, configuration.train, seeds=config.seeds
    )
    cpu = time.process_time() - cpu
    test_klines = slice_klines(klines, fold.test.start_ms - pad, fold.test.end_ms)
    out = Path(work) / fold.name / variant
    members: list[dict[str, Any]] = []
    arrays: dict[str, Any] = {}
    for seed, result in zip(config.seeds, results, strict=True):
        result.policy.metadata["defaults"] = chosen.metadata()
        policy_dir = result.policy.save(out / f"seed{seed}" / "policy")
        curves = policy_curves(result.policy, test_klines, fold.test, fee_rates(config.fee_rate), config.slippage_bps)
        arrays.update({f"seed{seed}_fee{m}": c.equity for m, c in curves.items()})
        member: dict[str, Any] = {
            "seed": seed,
            "policy_dir": str(policy_dir),
            "curves": {
                str(m): {"fees": c.fees, "notional": c.notional, "n_trades": c.n_trades} for m, c in curves.items()
            },
        }
        if replay is not None and config.online_replay:
            env = portfolio_config(config.fee_rate, config.slippage_bps)
            online, member["online"] = replay_member(
                replay, result.policy, test_klines, fold.test, env, seed, config.online_batch_hours, curves[1]
            )
            arrays.update({f"seed{seed}_online_{mode}": equity for mode, equity in online.items()})
        members.append(member)
    np.savez(out / CURVES_FILE, **arrays)
    summary = {
        "fold": fold.to_dict(),
        "variant": variant,
        "seeds": list(config.seeds),
        "members": members,
        "train_seconds": results[0].seconds,
        "train_cpu_seconds": cpu,
        "env_steps": results[0].env_steps * len(results),
        "updates": results[0].updates,
        "device": str(results[0].agent.device),
        "defaults": chosen.log_params(),
    }
    (out / RESULT_FILE).write_text(json.dumps(summary, indent=2))
    log.info(
        "fold=%s variant=%s seeds=%s seconds=%.1f env_steps=%d",
        fold.name,
        variant,
        list(config.seeds),
        results[0].seconds,
        summary["env_steps"],
    )
    return {
        "fold": fold.index,
        "variant": variant,
        "result": str(out / RESULT_FILE),
        "seconds": results[0].seconds,
        "cpu_seconds": cpu,
        "env_steps": summary["env_steps"],
    }


def tasks(config: WalkForwardConfig) -> list[tuple[int, str]]:
    """(fold index, variant) pairs, the slowest variant first (so workers finish together)."""
    order = sorted(config.variants, key=lambda v: v != "lstm")
    return [(fold.index, variant) for variant in order for fold in config.folds()]


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


ProgressFn = Callable[[int, int, dict[str, Any]], None]


def train_all(
    config: WalkForwardConfig,
    snapshot: Path,
    work: Path,
    workers: int = 2,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    replay: OnlineReplay | None = None,
) -> list[dict[str, Any]]:
    """Run every (fold, variant) task, in ``workers`` processes of one torch thread each (or inline);
    ``replay`` must be a module-level function (it travels to the worker processes by name)."""
    folds = {fold.index: fold for fold in config.folds()}
    todo = tasks(config)
    done: list[dict[str, Any]] = []
    if workers <= 1:
        _init_worker(1)
        for index, variant in todo:
            done.append(train_fold_variant(config, snapshot, folds[index], variant, work, device, replay=replay))
            if progress:
                progress(len(done), len(todo), done[-1])
        return done
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(1,)) as pool:
        futures = [
            pool.submit(train_fold_variant, config, snapshot, folds[i], v, work, device, replay=replay) for i, v in todo
        ]
        for future in as_completed(futures):
            done.append(future.result())
            if progress:
                progress(len(done), len(todo), done[-1])
    return sorted(done, key=lambda item: (item["fold"], item["variant"]))


@dataclass(frozen=True)
class WalkForwardRun:
    """What :func:`run_walkforward` produced."""

    work: Path
    report: Path
    summary: dict[str, Any]
    wall_seconds: float
    parent_run_id: str | None


def run_walkforward(
    config: WalkForwardConfig,
    klines: pd.DataFrame,
    work: Path,
    workers: int = 2,
    device: str = "cpu",
    tracking_uri: str | None = None,
    progress: ProgressFn | None = None,
    replay: OnlineReplay | None = None,
) -> WalkForwardRun:
    """The whole walk-forward here: snapshot, every task, statistics, report, and MLflow when a URI is given."""
    from pipelines.walkforward.report import write_report
    from pipelines.walkforward.summary import summarise

    started = time.perf_counter()
    snapshot = write_snapshot(klines, config, work)
    trained = train_all(config, snapshot, work, workers, device, progress, replay)
    summary = summarise(config, snapshot, work, trained)
    report = write_report(summary, work / "report")
    parent = None
    if tracking_uri:
        from pipelines.walkforward.mlflow_runs import log_walkforward

        parent = log_walkforward(tracking_uri, summary, work / "report")
    return WalkForwardRun(work, report, summary, time.perf_counter() - started, parent)
