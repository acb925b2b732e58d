"""Evaluation results as types: the :class:`EvaluationReport` of a policy on a test range.

pipelines/evaluate.py produces it; the gate, the plots, the experiments' tables, the CLI and the
tracking code read it through its fields (``report.agent.portfolio_fees.sharpe``). It becomes strings
only at the edges: metrics.json (:meth:`EvaluationReport.to_dict`) and MLflow metric names
(``<who>.<accounting>.<figure>``, flattened by the tracking code).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Generic, Literal, TypeVar, get_args

import numpy as np

#: The accountings every evaluation reports (shared/DESIGN.md §7).
ReportedAccounting = Literal["unit", "portfolio_no_fees", "portfolio_fees"]
REPORTED_ACCOUNTINGS: tuple[ReportedAccounting, ...] = get_args(ReportedAccounting)
T = TypeVar("T")


@dataclass(frozen=True)
class Metrics:
    """Backtest figures of one action sequence in one accounting."""

    final_profit: float  # unit: realised FIFO profit; portfolio: final equity − capital
    total_return: float  # final equity / capital − 1 (marked at the last close)
    sharpe: float  # annualised, hourly equity returns
    max_drawdown: float  # largest fall from a running peak, fraction of the peak
    n_buys: int
    n_sells: int
    n_trades: int
    fees: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        return cls(**data)


@dataclass(frozen=True)
class Backtest:
    """Equity curves and metrics of ``n`` action sequences over the rows ``rows``."""

    rows: np.ndarray  # int64 [N]
    equity: np.ndarray  # float64 [n, N]
    buys: np.ndarray  # bool [n, N] executed buys
    sells: np.ndarray  # bool [n, N] executed sells
    metrics: list[Metrics]


@dataclass(frozen=True)
class PerAccounting(Generic[T]):
    """One value (metrics, a backtest) per reported accounting."""

    unit: T
    portfolio_no_fees: T
    portfolio_fees: T

    def __getitem__(self, accounting: ReportedAccounting) -> T:
        return getattr(self, accounting)

    def items(self) -> list[tuple[ReportedAccounting, T]]:
        return [(name, self[name]) for name in REPORTED_ACCOUNTINGS]

    @classmethod
    def from_mapping(cls, values: Mapping[str, T]) -> PerAccounting[T]:
        return cls(**{name: values[name] for name in REPORTED_ACCOUNTINGS})


@dataclass(frozen=True)
class Curves:
    """The series behind the plots of an evaluation."""

    open_time: np.ndarray  # int64 [N] open_time of the test rows
    close: np.ndarray  # float64 [N] traded symbol's close
    agent: PerAccounting[Backtest]  # the agent's backtest (equity curve, executed trades) per accounting


@dataclass(frozen=True)
class EvaluationReport:
    """What :func:`pipelines.evaluate.evaluate_policy` measured on a test range: the agent's and buy-and-hold's
    :class:`Metrics` in every reported accounting, and the curves for the plots (``None`` when the
    report was read back from a metrics.json)."""

    hours: int
    agent: PerAccounting[Metrics]
    buy_and_hold: PerAccounting[Metrics]
    curves: Curves | None = None

    def plot_curves(self) -> Curves:
        """The curves, or ValueError for a report read back from a metrics.json (it has none)."""
        if self.curves is None:
            raise ValueError("this evaluation report has no curves (read back from metrics.json?): evaluate again")
        return self.curves

    def to_dict(self) -> dict[str, Any]:
        """``{"hours", "agent", "buy_and_hold"}`` with a dict of figures per accounting (metrics.json)."""
        return {
            "hours": self.hours,
            "agent": {name: m.to_dict() for name, m in self.agent.items()},
            "buy_and_hold": {name: m.to_dict() for name, m in self.buy_and_hold.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """The metrics of :meth:`to_dict` (other keys are ignored; no curves)."""
        return cls(
            hours=int(data["hours"]),
            agent=PerAccounting.from_mapping({k: Metrics.from_dict(v) for k, v in data["agent"].items()}),
            buy_and_hold=PerAccounting.from_mapping({k: Metrics.from_dict(v) for k, v in data["buy_and_hold"].items()}),
        )
