"""The objective of a study: a configuration trained and backtested on the purged folds of the tuning range.

For each fold (pipelines/tune/config.py), the trial's configuration trains the study's seeds as one batched
ensemble (:func:`pipelines.train.train_ensemble`, the code of ``train`` and the DAGs) on the fold's training
window only, and each member's greedy policy is backtested on the validation month through the serving path
with portfolio accounting, the study's fee per side and slippage (pipelines/walkforward/backtests.py). Then

    fold score  = mean over seeds of [ Sharpe after fees − trade_penalty × max(0, trades / budget − 1) ]
    objective   = mean (or lower quartile) of the fold scores

with the Sharpe annualised from the month's hourly returns and the budget ``trade_budget`` trades per 30
days (60 by default, issue 13's target), scaled to the month's hours. Why a penalty on top of fees that the
Sharpe already pays: a configuration that trades hundreds of times a month is only as good as the fee and
slippage assumed, and the platform's target is at most 60 trades a month; a soft penalty (0.5 Sharpe per
100 % over the budget) lets a clearly better trader through and breaks ties toward fewer trades. A trader
that never trades scores 0 (a flat month has no Sharpe), below any trader that earns more than cash.

After each fold the running objective is reported to Optuna, whose median pruner may stop the trial.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import optuna
import pandas as pd

from models.kline import HOUR_MS
from pipelines.dataset import MarketDataset, build_dataset
from pipelines.defaults import Configuration, FeatureConfig, configure
from pipelines.train import train_ensemble
from pipelines.tune.config import Aggregate, TuneConfig, history_hours
from pipelines.tune.space import SearchSpace
from pipelines.walkforward.backtests import FoldMarket, baseline_curve, policy_curves
from pipelines.walkforward.folds import Fold
from pipelines.walkforward.runner import slice_klines
from pipelines.walkforward.statistics import hourly_returns, sharpe

log = logging.getLogger(__name__)

HOURS_PER_BUDGET = 720  # the trade budget is per 30 days


@dataclass(frozen=True)
class FoldScore:
    """One validation month of one trial (means over the seeds)."""

    fold: int
    month: str
    sharpe: float
    total_return: float
    n_trades: float
    penalty: float
    score: float
    buy_and_hold_sharpe: float
    """Buy-and-hold's Sharpe after fees on the same hours (context, not part of the score)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trade_penalty(n_trades: float, hours: int, budget: float, weight: float) -> float:
    """``weight`` × the share of trades above ``budget`` per 30 days (scaled to ``hours``); 0 within it."""
    allowed = budget * hours / HOURS_PER_BUDGET
    return weight * max(0.0, n_trades / allowed - 1.0)


def aggregate(scores: Sequence[float], how: Aggregate) -> float:
    """The mean of the fold scores, or their lower quartile (linear interpolation)."""
    values = np.asarray(scores, dtype=np.float64)
    return float(values.mean() if how == "mean" else np.quantile(values, 0.25))


@dataclass
class StudyData:
    """What every trial of a study reads, built once per worker process: the klines of the reading span
    (never a test month), the resolved config, the space and the folds; datasets cached per fold and features."""

    klines: pd.DataFrame
    config: TuneConfig
    space: SearchSpace
    folds: list[Fold]
    device: str = "cpu"
    _datasets: dict[tuple[int, FeatureConfig], MarketDataset] = field(default_factory=dict)

    @property
    def pad_ms(self) -> int:
        return history_hours(self.space) * HOUR_MS

    def dataset(self, fold: Fold, features: FeatureConfig) -> MarketDataset:
        """The fold's training dataset: klines up to the training window's end only, normalisation fitted on it."""
        key = (fold.index, features)
        if key not in self._datasets:
            train_klines = slice_klines(self.klines, fold.train.start_ms - self.pad_ms, fold.train.end_ms)
            self._datasets[key] = build_dataset(
                train_klines, fold.train, self.config.symbols, self.config.traded_symbol, features.window,
                feature_set=features.set,
            )  # fmt: skip
        return self._datasets[key]


def trial_configuration(params: dict[str, Any], config: TuneConfig, device: str) -> Configuration:
    """The configuration a trial trains: the preset for its reward, the study's fee and slippage, with
    ``params``, one torch thread, shortened to ``config.steps`` env steps when the study asks for quick trials."""
    configuration = configure(config.variant, params, config.seeds[0], device, config.fee_rate, config.slippage_bps)
    configuration = replace(configuration, train=replace(configuration.train, threads=1))
    return configuration.shortened(config.steps) if config.steps else configuration


def evaluate_fold(data: StudyData, configuration: Configuration, fold: Fold) -> FoldScore:
    """Train the seeds on ``fold``'s training window, backtest each on its validation month, score it."""
    config = data.config
    dataset = data.dataset(fold, configuration.features)
    results = train_ensemble(
        dataset, fold.train, configuration.agent, configuration.env, configuration.train, seeds=config.seeds
    )
    validation = slice_klines(data.klines, fold.test.start_ms - data.pad_ms, fold.test.end_ms)
    sharpes, returns, trades, penalties = [], [], [], []
    for result in results:
        curve = policy_curves(result.policy, validation, fold.test, {1: config.fee_rate}, config.slippage_bps)[1]
        sharpes.append(sharpe(hourly_returns(curve.equity)))
        returns.append(float(curve.equity[-1] / curve.equity[0] - 1.0))
        trades.append(curve.n_trades)
        penalties.append(trade_penalty(curve.n_trades, len(curve.equity), config.trade_budget, config.trade_penalty))
    market = FoldMarket.from_klines(validation, results[0].policy.spec, fold.test)
    hold = baseline_curve("buy_and_hold", market, config.fee_rate, config.slippage_bps)
    return FoldScore(
        fold=fold.index,
        month=fold.name[-7:],
        sharpe=float(np.mean(sharpes)),
        total_return=float(np.mean(returns)),
        n_trades=float(np.mean(trades)),
        penalty=float(np.mean(penalties)),
        score=float(np.mean(np.subtract(sharpes, penalties))),
        buy_and_hold_sharpe=sharpe(hourly_returns(hold.equity)),
    )


class TrialLog(Protocol):
    """Where a trial's progress goes besides the study (an MLflow nested run, or nowhere)."""

    @property
    def run_id(self) -> str | None: ...

    def fold(self, score: FoldScore, running: float) -> None: ...

    def finish(self, state: str, value: float) -> None: ...


class TrialRecorder(Protocol):
    def trial(
        self, number: int, params: dict[str, Any], configuration: Configuration
    ) -> AbstractContextManager[TrialLog]: ...


class _Silent:
    run_id: str | None = None

    def fold(self, score: FoldScore, running: float) -> None:
        return None

    def finish(self, state: str, value: float) -> None:
        return None


class NoRecorder:
    """Records nothing (``--no-tracking``)."""

    @contextmanager
    def trial(self, number: int, params: dict[str, Any], configuration: Configuration) -> Iterator[TrialLog]:
        yield _Silent()


def run_trial(trial: optuna.Trial, data: StudyData, recorder: TrialRecorder) -> float:
    """Optuna's objective: sample, train and score fold by fold (reporting the running value), return the
    aggregate; raises :class:`optuna.TrialPruned` when the pruner stops the trial."""
    params = data.space.sample(trial)
    configuration = trial_configuration(params, data.config, data.device)
    trial.set_user_attr("config", params)
    scores: list[float] = []
    pruned = False
    with recorder.trial(trial.number, params, configuration) as record:
        trial.set_user_attr("mlflow_run_id", record.run_id or "")
        for fold in data.folds:
            result = evaluate_fold(data, configuration, fold)
            scores.append(result.score)
            running = aggregate(scores, data.config.aggregate)
            trial.set_user_attr(f"fold{fold.index}", result.to_dict())
            record.fold(result, running)
            trial.report(running, fold.index)
            log.info("trial=%d fold=%s score=%.3f running=%.3f", trial.number, result.month, result.score, running)
            if data.config.prune and fold.index < len(data.folds) - 1 and trial.should_prune():
                pruned = True
                break
        value = aggregate(scores, data.config.aggregate)
        record.finish("pruned" if pruned else "complete", value)
    if pruned:
        raise optuna.TrialPruned(f"running objective {value:.3f} after {len(scores)} fold(s)")
    if not math.isfinite(value):
        raise ValueError(f"trial {trial.number}: the objective is not finite ({value})")
    return value
