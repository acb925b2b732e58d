"""Walk-forward folds: a training window, an embargo, then a test step, rolled over a range.

For a test range ``[start, end)`` cut into test steps of ``test_months`` calendar months (the last one
ends at ``end``), fold ``i`` is:

- **test**: ``[t_i, t_{i+1})``;
- **embargo**: the ``embargo_hours`` before ``t_i`` (nothing trains or tests there);
- **train**: ``[s_i, t_i - embargo)`` with ``s_i = t_i - train_months`` calendar months (``sliding``) or
  the first fold's ``s_0`` for every fold (``expanding``).

Why the embargo: a state at hour ``h`` is a window of ``window`` feature rows whose rolling statistics
reach ``WARMUP_HOURS`` further back, and a transition's reward and next state use hour ``h + 1``. With
``embargo_hours >= WARMUP_HOURS + window + 1`` no test decision's feature window contains a training
hour and no training transition (its window, its reward, its next state) reaches a test hour, so
training and testing share no kline. The normalisation is fitted on each fold's training window only
(:func:`pipelines.dataset.build_dataset`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from models.errors import PermanentError
from models.features import WARMUP_HOURS
from models.kline import HOUR_MS
from models.time_range import TimeRange

WindowKind = Literal["sliding", "expanding"]


def min_embargo_hours(window: int = 10) -> int:
    """The smallest embargo (hours) that keeps training and test klines apart (see the module doc)."""
    return WARMUP_HOURS + window + 1


def add_months(ms: int, months: int) -> int:
    """``ms`` (UTC epoch ms) moved by ``months`` calendar months (day clamped to the month's length)."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    days = [
        31,
        29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month]
    return int(moment.replace(year=year, month=month + 1, day=min(moment.day, days)).timestamp() * 1000)


def iso(ms: int) -> str:
    """``2022-01-01`` (or with the time when not midnight) of an epoch-ms instant."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d") if moment.hour == moment.minute == 0 else moment.strftime("%Y-%m-%dT%H:%M")


def _range(start: int, end: int) -> TimeRange:
    return TimeRange(start, end, f"{iso(start)}:{iso(end)}")


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold (ranges half-open, open_time in UTC ms)."""

    index: int
    train: TimeRange
    test: TimeRange
    embargo_hours: int

    @property
    def name(self) -> str:
        """``fold03-2022-04`` — index and the test month."""
        return f"fold{self.index:02d}-{iso(self.test.start_ms)[:7]}"

    @property
    def embargo(self) -> TimeRange:
        return _range(self.train.end_ms, self.test.start_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "train": str(self.train),
            "test": str(self.test),
            "embargo_hours": self.embargo_hours,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fold:
        from models.time_range import parse_range

        return cls(
            int(data["index"]), parse_range(data["train"]), parse_range(data["test"]), int(data["embargo_hours"])
        )


@dataclass(frozen=True)
class FoldPlan:
    """How to cut a test range into folds."""

    test_range: TimeRange
    train_months: int = 12
    window: WindowKind = "sliding"
    embargo_hours: int = min_embargo_hours()
    test_months: int = 1
    feature_window: int = 10

    def __post_init__(self) -> None:
        if self.train_months < 1 or self.test_months < 1:
            raise PermanentError("train_months and test_months must be at least 1")
        if self.window not in ("sliding", "expanding"):
            raise PermanentError(f"window must be sliding or expanding, got {self.window!r}")
        needed = min_embargo_hours(self.feature_window)
        if self.embargo_hours < needed:
            raise PermanentError(
                f"embargo_hours={self.embargo_hours} is shorter than the feature window plus one hour "
                f"({WARMUP_HOURS} h warm-up + {self.feature_window} h window + 1 h = {needed} h)"
            )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "test_range": str(self.test_range)}


def plan_folds(plan: FoldPlan) -> list[Fold]:
    """The folds of ``plan``, oldest first; every test step but possibly the last is ``test_months`` long."""
    starts = [plan.test_range.start_ms]
    while (following := add_months(starts[-1], plan.test_months)) < plan.test_range.end_ms:
        starts.append(following)
    ends = [*starts[1:], plan.test_range.end_ms]
    first_train = add_months(starts[0], -plan.train_months)
    folds = []
    for index, (start, end) in enumerate(zip(starts, ends, strict=True)):
        train_start = add_months(start, -plan.train_months) if plan.window == "sliding" else first_train
        train_end = start - plan.embargo_hours * HOUR_MS
        if train_end - train_start < 2 * HOUR_MS:
            raise PermanentError(f"fold {index}: the embargo leaves no training hours before {iso(start)}")
        folds.append(Fold(index, _range(train_start, train_end), _range(start, end), plan.embargo_hours))
    return folds


def leaked_hours(fold: Fold, window: int = 10) -> np.ndarray:
    """Open times (ms) of test hours that any training sample of ``fold`` touches, or that any test
    decision's feature window shares with training hours; empty when the fold is clean.

    A training transition at hour ``h`` reads the klines of ``[h - WARMUP_HOURS - window + 1, h + 1]``
    (its feature window, the next hour's close and next state); a test decision at ``h`` reads
    ``[h - WARMUP_HOURS - window + 1, h]``.
    """
    history = (WARMUP_HOURS + window - 1) * HOUR_MS
    train_hours = np.arange(fold.train.start_ms, fold.train.end_ms, HOUR_MS)
    test_hours = np.arange(fold.test.start_ms, fold.test.end_ms, HOUR_MS)
    # what training reads: from the first sample's window start to one hour after the last sample
    train_reads = (train_hours[0] - history, train_hours[-1] + HOUR_MS)
    touched = test_hours[(test_hours >= train_reads[0]) & (test_hours <= train_reads[1])]
    # what testing reads: from the first decision's window start to the last test hour
    test_reads_start = test_hours[0] - history
    shared = train_hours[train_hours >= test_reads_start]
    return np.union1d(touched, shared)
