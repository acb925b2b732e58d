"""What a retrain does and when its gate promotes: the configs of the ``dqn_retrain`` DAG, the source of
its params' defaults and of ``klinestream promote``'s options.

Light on purpose (dataclasses and models.time_range only): the DAG file imports it at parse time, where
mlflow, pandas and torch must stay out (tests/unit/test_dag_integrity.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from models.config import REWARD_KINDS
from models.errors import PermanentError
from models.time_range import TimeRange, parse_range

VARIANTS = ("linear", "lstm")
#: The reference protocol's ranges (shared/DESIGN.md §7): train on 2021, hold out January 2023.
TRAIN_RANGE, TEST_RANGE = parse_range("2021-01-01:2022-01-01"), parse_range("2023-01-01:2023-02-01")
#: What a challenger must beat on the holdout besides the champion (pipelines/walkforward/backtests.py).
GATE_BASELINES = ("cash", "buy_and_hold", "trend")


@dataclass(frozen=True)
class GateConfig:
    """When a challenger may replace the champion."""

    sharpe_margin: float = 0.1
    """The challenger's Sharpe after fees must exceed the champion's by more than this (a tie never wins)."""
    max_drawdown: float = 0.35
    """Absolute bound on the challenger's max drawdown after fees (fraction of the peak)."""
    drawdown_slack: float = 0.05
    """The challenger's max drawdown may exceed the champion's by at most this."""
    min_trades: int = 10
    """Fewest trades (buys + sells) on the holdout: a model that never trades proves nothing."""
    min_sharpe: float | None = None
    """Optional absolute floor on the challenger's Sharpe (also applies with no champion)."""
    baseline: str = "cash"
    """The baseline the challenger must beat on the holdout after fees, in return and in Sharpe (also with no
    champion): "cash" (a positive return and Sharpe), "buy_and_hold" or "trend" (the walk-forward's rule)."""

    def __post_init__(self) -> None:
        if self.baseline not in GATE_BASELINES:
            raise PermanentError(f"gate baseline must be one of {GATE_BASELINES}, got {self.baseline!r}")


@dataclass(frozen=True)
class RetrainConfig:
    """What one retrain does (the DAG's params, parsed).

    Without pinned ranges a retrain rolls with its run: the holdout is the last ``holdout_days`` of
    validated klines up to the run's data-interval end, and training is the ``train_months`` before it,
    less an embargo (pipelines/retrain.py: ``plan_ranges``)."""

    train_range: TimeRange | None = None
    """Pinned training klines (needs a pinned ``test_range``); None = the ``train_months`` before the embargo."""
    test_range: TimeRange | None = None
    """Pinned holdout (evaluation and gate); None = the last ``holdout_days`` of validated klines."""
    holdout_days: int = 28
    """Days of the newest validated klines the gate judges on."""
    train_months: int = 12
    """Calendar months of training klines before the embargo."""
    embargo_hours: int | None = None
    """Hours between training and holdout; None = the walk-forward's minimum (feature window + 1 h)."""
    min_new_days: int = 7
    """Days of new validated klines, since the last successful retrain's holdout end, that trigger a retrain."""
    variants: tuple[str, ...] = VARIANTS
    seeds: tuple[int, ...] = (0,)
    reward: str | None = None
    """Training reward (models.config.REWARD_KINDS); None = the reward of the project's defaults
    (pipelines/defaults.py: fee-aware ``risk`` unless a study chose another). "reference" only reproduces the paper."""
    episodes: int | None = None
    """Episodes per environment (total env steps = episodes × episode_hours × n_envs); None = defaults."""
    episode_hours: int | None = None
    n_envs: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    """Agent options (models/options.py) on top of the default configuration, e.g. {"min_hold_hours": 4}."""
    promote: bool = True
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown or not self.variants:
            raise PermanentError(f"variants must be among {VARIANTS}, got {list(self.variants)}")
        if not self.seeds:
            raise PermanentError("seeds must name at least one seed, e.g. [0]")
        if self.reward is not None and self.reward not in REWARD_KINDS:
            raise PermanentError(f"reward must be one of {REWARD_KINDS}, got {self.reward!r}")
        if self.train_range is not None and self.test_range is None:
            raise PermanentError("a pinned train_range needs a pinned test_range (or pin neither: rolling windows)")
        if min(self.holdout_days, self.train_months, self.min_new_days) < 1:
            raise PermanentError("holdout_days, train_months and min_new_days must be at least 1")
        if self.options:
            self._check_options()

    def _check_options(self) -> None:
        """Options parsed to their types and valid on the configuration each variant trains (imports torch)."""
        from models.settings import load_settings
        from pipelines.defaults import load_defaults
        from pipelines.train import checked_options

        defaults = load_defaults(load_settings().defaults_file)  # what the retrain trains (pipelines/retrain.py)
        try:
            object.__setattr__(self, "options", checked_options(self.options, self.variants, self.reward, defaults))
        except ValueError as error:
            raise PermanentError(f"options: {error}") from None

    @property
    def rolling(self) -> bool:
        """The ranges come from the run (none pinned)."""
        return self.test_range is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, the ranges as their ``START:END`` text (None when they roll with the run)."""
        ranges = {k: None if v is None else str(v) for k, v in (("train_range", self.train_range),
                                                                 ("test_range", self.test_range))}  # fmt: skip
        return {**asdict(self), **ranges, "options": dict(self.options)}


def config_from_params(params: Mapping[str, Any]) -> RetrainConfig:
    """A :class:`RetrainConfig` from DAG params (lists from JSON, blanks meaning "default"); the gate's
    fields come from ``gate_<field>`` keys (``gate_sharpe_margin``, ``gate_min_trades``, ...)."""
    gate_params = {
        f.name: params[f"gate_{f.name}"] for f in fields(GateConfig) if params.get(f"gate_{f.name}") not in (None, "")
    }

    def optional_int(key: str) -> int | None:
        value = params.get(key)
        return None if value in (None, "", 0) else int(value)

    def time_range(key: str) -> TimeRange | None:
        return parse_range(str(params[key])) if params.get(key) else None

    defaults = RetrainConfig()

    def days(key: str, default: int) -> int:
        return optional_int(key) or default

    return RetrainConfig(
        train_range=time_range("train_range"),
        test_range=time_range("test_range"),
        holdout_days=days("holdout_days", defaults.holdout_days),
        train_months=days("train_months", defaults.train_months),
        embargo_hours=optional_int("embargo_hours"),
        min_new_days=days("min_new_days", defaults.min_new_days),
        variants=tuple(params.get("variants") or defaults.variants),
        seeds=tuple(int(s) for s in (params.get("seeds") or defaults.seeds)),
        reward=str(params["reward"]) if params.get("reward") else None,
        episodes=optional_int("episodes"),
        episode_hours=optional_int("episode_hours"),
        n_envs=optional_int("n_envs"),
        options=dict(params.get("options") or {}),
        promote=bool(params.get("promote", defaults.promote)),
        gate=GateConfig(**gate_params),
    )
