"""What a study does: the tuning range and its purged validation folds, the objective's settings, and the
guard that keeps every kline the objective reads out of the walk-forward's test months.

The folds are a walk-forward inside the tuning range only: its last ``folds`` calendar months are the
validation months; each is preceded by an embargo and trained on the ``train_months`` before it (sliding),
with the machinery of pipelines/walkforward/folds.py. The embargo is at least the longest feature lookback
the space can choose plus the window plus one hour, so no validation decision's feature window holds a
training hour and no training transition (its window, reward, next state) reaches a validation hour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from models.errors import PermanentError
from models.feature_sets import DEFAULT_FEATURE_SET
from models.kline import HOUR_MS
from models.settings import DEFAULT_SYMBOLS
from models.time_range import TimeRange, parse_range
from pipelines.defaults import FeatureConfig
from pipelines.tune.space import SearchSpace
from pipelines.walkforward.folds import Fold, FoldPlan, add_months, iso, min_embargo_hours, plan_folds

#: The reference protocol's training year: what a study may see by default.
DEFAULT_TUNE_RANGE = "2021-01-01:2022-01-01"
#: The walk-forward's test months (pipelines.walkforward.runner.WalkForwardConfig.test_range): never tuned on.
DEFAULT_FORBIDDEN_RANGE = "2022-01-01:2023-02-01"
Aggregate = Literal["mean", "lower_quartile"]
#: MLflow experiment of the studies' runs (pipelines/tune/tracking.py).
EXPERIMENT = "klinestream-tune"
#: Hours of klines read before a training window beyond the features' own history (outages at its start).
HISTORY_MARGIN_HOURS = 48


class TestMonthsError(PermanentError):
    """The objective would read klines of the walk-forward's test months."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class TuneConfig:
    """What one study optimises (the CLI's options); the fields of :data:`OBJECTIVE_FIELDS` define its
    objective and may not change when the study resumes."""

    variant: str = "linear"
    """Q-network variant the study configures (one study per variant)."""
    tune_range: str = DEFAULT_TUNE_RANGE
    """Every kline the objective reads lies in START:END (UTC, end excluded) or the feature history before it."""
    folds: int = 3
    """Validation months: the last ``folds`` calendar months of the range, one fold each."""
    train_months: int = 6
    """Months of training before each validation month (sliding)."""
    embargo_hours: int | None = None
    """Hours between training and validation; None = the space's longest feature lookback + window + 1."""
    seeds: tuple[int, ...] = (0,)
    """Seeds trained per fold (one batched ensemble); the fold's score is their mean."""
    steps: int | None = None
    """Env steps per member and fold (None = the configuration's own length); for quick studies."""
    fee_rate: float = 0.001
    """Fee per side of the validation backtests (the objective is after fees)."""
    slippage_bps: float = 0.0
    trade_budget: float = 60.0
    """Trades per 30 days above which a validation month is penalised (issue 13's target: at most 60)."""
    trade_penalty: float = 0.5
    """Sharpe units taken off per 100 % of trades above the budget."""
    aggregate: Aggregate = "mean"
    """How fold scores become the objective: their mean, or their lower quartile (a robust choice)."""
    forbidden_range: str = DEFAULT_FORBIDDEN_RANGE
    """Months no kline of the objective may come from: the walk-forward's test months."""
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    traded_symbol: str = "BTCUSDT"
    sampler_seed: int = 0
    """Seed of the TPE sampler (offset by the trial's ordinal, so a resumed study does not repeat itself)."""
    startup_trials: int = 8
    """Random trials before TPE models the results."""
    prune: bool = True
    """Stop trials whose running score is below the median of earlier trials at the same fold."""

    def __post_init__(self) -> None:
        if self.folds < 1 or self.train_months < 1:
            raise PermanentError("folds and train_months must be at least 1")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise PermanentError(f"seeds must name distinct seeds, got {list(self.seeds)}")
        if self.steps is not None and self.steps < 1:
            raise PermanentError("steps must be at least 1 (or empty for the configuration's own length)")
        if self.aggregate not in ("mean", "lower_quartile"):
            raise PermanentError(f"aggregate must be mean or lower_quartile, got {self.aggregate!r}")
        if self.trade_budget <= 0 or self.trade_penalty < 0:
            raise PermanentError("trade_budget must be > 0 and trade_penalty >= 0")
        for text in (self.tune_range, self.forbidden_range):
            parse_range(text)  # a readable error now rather than in a worker

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuneConfig:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)


#: Fields that define a study's objective: a resumed study must keep them (its trials must stay comparable).
OBJECTIVE_FIELDS = (
    "variant", "tune_range", "folds", "train_months", "embargo_hours", "seeds", "steps", "fee_rate",
    "slippage_bps", "trade_budget", "trade_penalty", "aggregate", "symbols", "traded_symbol",
)  # fmt: skip


def feature_history_hours(space: SearchSpace) -> int:
    """The longest lookback of any feature the space can choose plus its largest window (hours)."""
    sets = space.values("features.set", DEFAULT_FEATURE_SET)
    windows = space.values("features.window", FeatureConfig.window)
    return max(FeatureConfig(feature_set, window).history_hours for feature_set in sets for window in windows)


def resolved(config: TuneConfig, space: SearchSpace) -> TuneConfig:
    """``config`` with its embargo set (the space's feature history + 1 hour unless given longer)."""
    needed = max(feature_history_hours(space) + 1, min_embargo_hours())
    if config.embargo_hours is not None and config.embargo_hours < needed:
        raise PermanentError(
            f"embargo_hours={config.embargo_hours} is shorter than the space's longest feature history + 1 h "
            f"({needed} h): validation decisions would read training hours"
        )
    return replace(config, embargo_hours=config.embargo_hours or needed)


def history_hours(space: SearchSpace) -> int:
    """Hours of klines read before a training or validation window for its first states."""
    return feature_history_hours(space) + HISTORY_MARGIN_HOURS


def reading_span(config: TuneConfig, space: SearchSpace) -> TimeRange:
    """Every kline the objective reads: the tuning range and the feature history before it."""
    tune = parse_range(config.tune_range)
    start = tune.start_ms - history_hours(space) * HOUR_MS
    return TimeRange(start, tune.end_ms, f"{iso(start)}:{iso(tune.end_ms)}")


def check_outside_test_months(config: TuneConfig, space: SearchSpace) -> None:
    """Refuse a study whose klines (range and feature history) overlap the forbidden test months."""
    span, forbidden = reading_span(config, space), parse_range(config.forbidden_range)
    if span.start_ms < forbidden.end_ms and forbidden.start_ms < span.end_ms:
        raise TestMonthsError(
            f"the tuning range {config.tune_range} (read from {iso(span.start_ms)} with its feature history) "
            f"overlaps the walk-forward's test months {config.forbidden_range}: never tune on test months; "
            f"choose a range inside the training period (e.g. {DEFAULT_TUNE_RANGE})"
        )


def validation_folds(config: TuneConfig) -> list[Fold]:
    """The purged folds inside the tuning range: the last ``folds`` months validate, each after an embargo."""
    if config.embargo_hours is None:
        raise PermanentError("resolve the embargo first (pipelines.tune.config.resolved)")
    tune = parse_range(config.tune_range)
    first = add_months(tune.end_ms, -config.folds)
    validation = TimeRange(first, tune.end_ms, f"{iso(first)}:{iso(tune.end_ms)}")
    plan = FoldPlan(validation, config.train_months, "sliding", config.embargo_hours, 1)
    folds = plan_folds(plan)
    if folds[0].train.start_ms < tune.start_ms:
        raise PermanentError(
            f"the tuning range {config.tune_range} is too short for {config.folds} validation month(s) after "
            f"{config.train_months} training month(s): the first fold would train from {iso(folds[0].train.start_ms)}"
        )
    return folds
