"""Technical indicators as pure numpy functions over fixed trailing windows of hourly series.

Every function takes float64 arrays on the hourly grid (one value per hour, oldest first, gaps already
filled by the feature transform: close carried forward, volume 0) and returns a float64 array of the
same length whose value at hour ``t`` depends only on the inputs at hours ``[t - lookback, t]``
(NaN where that history is not there yet). No smoothing has an infinite memory: the exponentially
weighted average is truncated to a fixed number of hours (:func:`ewma_length`) and its weights are
renormalised, so a fixed number of hours of history reproduces every value exactly.

Each docstring gives the lookback (hours before ``t`` that the value reads) and the formula.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Rows per block when a weighted window sum is computed (bounds the temporary ``[rows, length]``).
_BLOCK_ROWS = 2048
#: Smallest realised volatility (log-return std per hour) before its logarithm: far below any market.
VOLATILITY_FLOOR = 1e-5
#: A truncated EWMA of span ``s`` keeps ``EWMA_SPANS_KEPT × s`` hours (weight left out ≈ e^-6 ≈ 0.25 %).
EWMA_SPANS_KEPT = 3


def trailing(values: np.ndarray, hours: int) -> np.ndarray:
    """``[T, hours]`` view of the last ``hours`` values ending at each row (NaN-padded at the start)."""
    padded = np.concatenate([np.full(hours - 1, np.nan), values])
    return sliding_window_view(padded, hours)


def log_return(log_close: np.ndarray, hours: int) -> np.ndarray:
    """Log return over ``hours``: ``log_close[t] - log_close[t - hours]``. Lookback ``hours``."""
    out = np.full(len(log_close), np.nan)
    out[hours:] = log_close[hours:] - log_close[:-hours]
    return out


def rsi(ret: np.ndarray, hours: int) -> np.ndarray:
    """Relative strength index of 1 h returns over ``hours`` (simple averages), scaled to [-1, 1].

    ``(up - down) / (up + down)`` with ``up``/``down`` the mean gain/loss (0 when both are 0), i.e.
    ``RSI / 50 - 1`` of the textbook 0..100 RSI. Lookback ``hours`` (``ret`` reads one hour back).
    """
    up = trailing(np.maximum(ret, 0.0), hours).mean(axis=1)
    down = trailing(np.maximum(-ret, 0.0), hours).mean(axis=1)
    total = up + down
    out = np.where(total > 0, (up - down) / np.where(total > 0, total, 1.0), 0.0)
    out[np.isnan(total)] = np.nan
    return out


def band_position(values: np.ndarray, hours: int, width: float) -> np.ndarray:
    """``(x - mean) / (width × std)`` over the trailing ``hours`` (0 when the std is 0). Lookback ``hours - 1``.

    ``width=2`` on the close is Bollinger %B rescaled to ±1 at the ±2 std bands (``2 %B - 1``);
    ``width=1`` on log volume is a rolling z-score.
    """
    band = trailing(values, hours)
    std = band.std(axis=1)
    out = np.where(std > 0, (values - band.mean(axis=1)) / (width * np.where(std > 0, std, 1)), 0.0)
    out[np.isnan(std)] = np.nan
    return out


def cci(high: np.ndarray, low: np.ndarray, close: np.ndarray, hours: int) -> np.ndarray:
    """Commodity channel index over ``hours``, in units of 100 (textbook CCI / 100). Lookback ``hours - 1``.

    Typical price ``tp = (high + low + close) / 3``; ``(tp - SMA(tp)) / (0.015 × MD)`` with MD the mean
    absolute deviation of ``tp`` from its SMA in the window (0 when MD is 0). Bounded by
    ``±hours / 3`` in these units.
    """
    typical = (high + low + close) / 3.0
    window = trailing(typical, hours)
    mean = window.mean(axis=1)
    deviation = np.abs(window - mean[:, None]).mean(axis=1)
    out = np.where(deviation > 0, (typical - mean) / (1.5 * np.where(deviation > 0, deviation, 1.0)), 0.0)
    out[np.isnan(deviation)] = np.nan
    return out


def ewma_length(span: int) -> int:
    """Hours an EWMA of ``span`` keeps after truncation (``EWMA_SPANS_KEPT × span``)."""
    return EWMA_SPANS_KEPT * span


def ewma_weights(span: int) -> np.ndarray:
    """Truncated EWMA weights, oldest first: ``α (1 - α)^k`` for ``k < ewma_length(span)``, ``α = 2 / (span + 1)``,
    renormalised to sum to 1."""
    alpha = 2.0 / (span + 1.0)
    weights = alpha * (1.0 - alpha) ** np.arange(ewma_length(span))
    return (weights / weights.sum())[::-1].copy()


def windowed_dot(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``Σ_k weights[k] × values[t - len + 1 + k]`` at each row (NaN until a full window exists).

    Summed row by row with numpy's reduction (not BLAS), so a row's value does not depend on where the
    series starts; rows are processed in blocks to bound memory.
    """
    windows = trailing(values, len(weights))
    out = np.empty(len(values))
    for start in range(0, len(values), _BLOCK_ROWS):
        block = windows[start : start + _BLOCK_ROWS]
        out[start : start + _BLOCK_ROWS] = (block * weights).sum(axis=1)
    return out


def ewma_ratio(close: np.ndarray, span: int) -> np.ndarray:
    """``log(close / EWMA(close))`` with the truncated EWMA of :func:`ewma_weights`. Lookback
    ``ewma_length(span) - 1``."""
    return np.log(close) - np.log(windowed_dot(close, ewma_weights(span)))


def realised_volatility(ret: np.ndarray, hours: int) -> np.ndarray:
    """``log(max(std(ret over hours), VOLATILITY_FLOOR))``: log of the realised volatility of 1 h log
    returns (population std). Lookback ``hours``. The log tames the heavy right tail of volatility."""
    std = trailing(ret, hours).std(axis=1)
    return np.log(np.maximum(std, VOLATILITY_FLOOR))


def signed_log(values: np.ndarray) -> np.ndarray:
    """``sign(x) × log(1 + |x|)``: linear near 0, logarithmic in the tails."""
    return np.sign(values) * np.log1p(np.abs(values))


def force_index(ret: np.ndarray, volume: np.ndarray, hours: int, volume_hours: int) -> np.ndarray:
    """Scale-free, smoothed force index (Elder): ``signed_log(mean over hours of 100 × ret × rvol)``.

    ``ret``: 1 h log return (in percent after ×100); ``rvol = volume / mean(volume over the trailing
    volume_hours)`` (0 when that mean is 0, e.g. a long outage) makes it independent of the unit of
    volume; a simple trailing mean replaces Elder's EMA; the signed log keeps one extreme hour from
    dominating the z-score. Lookback ``hours - 1 + max(1, volume_hours - 1)``.
    """
    mean_volume = trailing(volume, volume_hours).mean(axis=1)
    relative = np.where(mean_volume > 0, volume / np.where(mean_volume > 0, mean_volume, 1.0), 0.0)
    relative[np.isnan(mean_volume)] = np.nan
    return signed_log(trailing(100.0 * ret * relative, hours).mean(axis=1))
