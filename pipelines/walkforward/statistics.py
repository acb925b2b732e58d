"""Statistics of walk-forward equity curves: performance figures, stitching, bootstrap and overfitting tests.

- :func:`performance`: total return, annualised Sharpe and Sortino of hourly returns, max drawdown,
  turnover and fees of one equity curve.
- :func:`stitch`: the out-of-sample folds compounded into one curve (each fold's growth applied to the
  level the previous folds reached), so the stitched final equity is capital × Π(1 + fold return).
- :func:`sharpe_confidence_interval`: a circular block bootstrap of the hourly returns (blocks keep the
  returns' short-range dependence; the block length is chosen a priori, one day by default).
- :func:`probabilistic_sharpe_ratio` and :func:`deflated_sharpe_ratio` (Bailey & López de Prado,
  "The Sharpe Ratio Efficient Frontier", 2012, and "The Deflated Sharpe Ratio", 2014): the
  probability that the true Sharpe exceeds a benchmark given the sample's length, skewness and
  kurtosis; the deflated version takes as benchmark the Sharpe expected from the best of N
  independent trials with the observed variance of the trials' Sharpe ratios.

Sharpe ratios inside PSR/DSR are per period (hourly, not annualised), as in the papers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from pipelines.evaluate import HOURS_PER_YEAR, max_drawdown

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def hourly_returns(equity: np.ndarray) -> np.ndarray:
    equity = np.asarray(equity, dtype=np.float64)
    return np.diff(equity) / equity[:-1]


def sharpe(returns: np.ndarray, periods: int = HOURS_PER_YEAR) -> float:
    """Annualised Sharpe (mean / population std × √periods; 0 for a flat curve)."""
    std = float(np.std(returns))
    return float(np.mean(returns)) / std * math.sqrt(periods) if std > 0 else 0.0


def sortino(returns: np.ndarray, periods: int = HOURS_PER_YEAR) -> float:
    """Annualised Sortino: mean / downside deviation (root mean square of the negative returns, target 0);
    0 when there is no downside and no gain, NaN when there is a gain and no loss (undefined)."""
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2))) if len(returns) else 0.0
    mean = float(np.mean(returns)) if len(returns) else 0.0
    if downside > 0:
        return mean / downside * math.sqrt(periods)
    return 0.0 if mean <= 0 else float("nan")


@dataclass(frozen=True)
class Performance:
    """Figures of one equity curve (``turnover`` and ``fees`` relative to the average equity / capital)."""

    total_return: float
    sharpe: float
    sortino: float
    max_drawdown: float
    turnover: float
    """Traded notional / average equity."""
    fees: float
    """Fees paid / starting equity."""
    n_trades: int
    hours: int

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def performance(equity: np.ndarray, fees: float = 0.0, notional: float = 0.0, n_trades: int = 0) -> Performance:
    """Figures of ``equity`` (hourly marks); ``fees`` and ``notional`` traded in quote currency."""
    equity = np.asarray(equity, dtype=np.float64)
    returns = hourly_returns(equity)
    return Performance(
        total_return=float(equity[-1] / equity[0] - 1.0),
        sharpe=sharpe(returns),
        sortino=sortino(returns),
        max_drawdown=max_drawdown(equity),
        turnover=float(notional / np.mean(equity)),
        fees=float(fees / equity[0]),
        n_trades=int(n_trades),
        hours=len(equity),
    )


def stitch(curves: Sequence[np.ndarray], capital: float) -> tuple[np.ndarray, np.ndarray]:
    """(stitched equity, the level each fold starts from) of fold curves compounded in order.

    Each fold's curve is scaled by ``level / curve[0]``: the stitched equity is the concatenation of
    the scaled curves and ends at ``capital × Π curve[-1] / curve[0]``. Between one fold's last mark
    and the next fold's first the equity does not move (each fold's model starts flat): a zero return.
    """
    level, starts, pieces = float(capital), [], []
    for curve in curves:
        curve = np.asarray(curve, dtype=np.float64)
        starts.append(level)
        pieces.append(curve * (level / curve[0]))
        level *= float(curve[-1] / curve[0])
    return np.concatenate(pieces), np.asarray(starts)


def sharpe_confidence_interval(
    returns: np.ndarray, level: float = 0.95, n_boot: int = 1000, block_hours: int = 24, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the annualised Sharpe under a circular block bootstrap of ``returns``."""
    returns = np.asarray(returns, dtype=np.float64)
    n = len(returns)
    if n < 2:
        return (float("nan"), float("nan"))
    block = max(1, min(block_hours, n))
    n_blocks = -(-n // block)
    rng = np.random.default_rng(seed)
    offsets = np.arange(block)
    values = np.empty(n_boot)
    for first in range(0, n_boot, 100):  # chunks keep the index array small
        count = min(100, n_boot - first)
        starts = rng.integers(0, n, size=(count, n_blocks))
        index = ((starts[:, :, None] + offsets) % n).reshape(count, -1)[:, :n]
        sample = returns[index]
        std = sample.std(axis=1)
        values[first : first + count] = np.where(
            std > 0, sample.mean(axis=1) / np.where(std > 0, std, 1.0) * math.sqrt(HOURS_PER_YEAR), 0.0
        )
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def moments(returns: np.ndarray) -> tuple[float, float, float]:
    """(per-period Sharpe, skewness, kurtosis — Pearson's, 3 for a normal) of ``returns``."""
    returns = np.asarray(returns, dtype=np.float64)
    std = float(returns.std())
    if std == 0:
        return 0.0, 0.0, 3.0
    z = (returns - returns.mean()) / std
    return float(returns.mean() / std), float(np.mean(z**3)), float(np.mean(z**4))


def probabilistic_sharpe_ratio(returns: np.ndarray, benchmark: float = 0.0) -> float:
    """PSR: P(true per-period Sharpe > ``benchmark``) =
    Φ((SR − SR*) √(n − 1) / √(1 − γ₃ SR + (γ₄ − 1)/4 SR²)); NaN for a flat series (no Sharpe)."""
    n = len(returns)
    if n < 2 or float(np.std(returns)) == 0.0:
        return float("nan")
    sr, skew, kurt = moments(returns)
    variance = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if variance <= 0:
        return float("nan")
    return _NORMAL.cdf((sr - benchmark) * math.sqrt(n - 1) / math.sqrt(variance))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """E[max of ``n_trials`` independent per-period Sharpe estimates] under the null of no skill:
    √V × ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e))); 0 for a single trial."""
    if n_trials < 1:
        raise ValueError("the number of trials must be at least 1")
    if n_trials == 1 or sharpe_variance <= 0:
        return 0.0
    first = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    second = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * first + EULER_GAMMA * second)


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, sharpe_variance: float) -> float:
    """DSR: the PSR against the Sharpe the best of ``n_trials`` trials would reach by luck.

    ``sharpe_variance``: variance of the trials' per-period Sharpe ratios (every variant × seed ×
    configuration tried); ``n_trials`` counts them all, including those whose returns are not given.
    """
    return probabilistic_sharpe_ratio(returns, expected_max_sharpe(n_trials, sharpe_variance))


def trials_sharpe_variance(trial_returns: Sequence[np.ndarray]) -> float:
    """Sample variance of the per-period Sharpe ratios of the trials (0 with fewer than two)."""
    ratios = [moments(r)[0] for r in trial_returns]
    return float(np.var(ratios, ddof=1)) if len(ratios) > 1 else 0.0
