"""The catalogue of per-symbol features and the named feature sets built from it.

A feature is a name, the hours of history it reads (its lookback: the value at hour ``t`` depends only
on klines with ``open_time`` in ``[t - lookback, t]``), an optional kline column it needs, and a pure
function of the symbol's gap-filled hourly series (:class:`SymbolSeries`, formulas in
models/indicators.py). A named set lists feature names; a :class:`models.features.FeatureSpec`
resolves it per symbol once and stores the resolved names, so a saved model keeps the features it was
trained with even if a set changes later. Changing what a *name* computes would change saved models:
add a new name instead.

Sets:

- ``reference`` — the reference system's close, volume, trade count and taker-buy volume plus five
  scale-free features: what every model saved before feature sets existed uses (spec version 1).
- ``indicators`` — scale-free indicators only (no price or volume level): multi-horizon returns,
  RSI, CCI, Bollinger, EWMA ratios, force index, realised volatility, volume z-score, taker-buy
  ratio, returns relative to the traded symbol.
- ``extended`` — ``reference`` plus every indicator it lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from models import indicators as ind


class SymbolSeries:
    """One symbol's klines on the common hourly grid, gaps filled, with derived series computed once.

    At a missing hour the close (and high, low) is the last close carried forward, the volume, count
    and taker-buy volume are 0 (taker-buy ratio 0.5): returns across an outage are flat, and the
    ``gap`` flag says so explicitly.
    """

    def __init__(
        self,
        present: np.ndarray,
        close: np.ndarray,
        columns: Callable[[str], np.ndarray],
        traded_log_close: np.ndarray | None,
    ) -> None:
        self.present = present
        self.close = close
        self._columns = columns
        self.traded_log_close = traded_log_close

    def column(self, name: str) -> np.ndarray:
        """A kline column on the grid (NaN at missing hours)."""
        return self._columns(name)

    @cached_property
    def log_close(self) -> np.ndarray:
        return np.log(self.close)

    @cached_property
    def volume(self) -> np.ndarray:
        return np.where(self.present, self.column("volume"), 0.0)

    @cached_property
    def log_volume(self) -> np.ndarray:
        return np.log1p(self.volume)

    @cached_property
    def ret(self) -> np.ndarray:
        """1 h log return (NaN at the first hour)."""
        return np.concatenate([[np.nan], np.diff(self.log_close)])

    def filled(self, name: str) -> np.ndarray:
        """A price column with the carried close at missing hours."""
        return np.where(self.present, self.column(name), self.close)

    def relative_return(self, hours: int) -> np.ndarray:
        """Log return over ``hours`` minus the traded symbol's over the same hours."""
        if self.traded_log_close is None:
            raise ValueError("relative returns need the traded symbol's closes")
        return ind.log_return(self.log_close, hours) - ind.log_return(self.traded_log_close, hours)


@dataclass(frozen=True)
class Feature:
    """One per-symbol feature of the catalogue."""

    lookback: int
    """Hours before ``t`` that the value at ``t`` reads."""
    compute: Callable[[SymbolSeries], np.ndarray]
    """float64 ``[T]`` values on the grid (NaN while its history is not there)."""
    column: str | None = None
    """Optional kline column the feature needs (the symbol has it only if its training klines had it)."""
    context_only: bool = False
    """Defined for the context symbols only (e.g. a return relative to the traded symbol)."""


def _taker_buy_ratio(s: SymbolSeries) -> np.ndarray:
    volume = s.volume
    return np.where(s.present & (volume > 0), s.column("taker_buy_volume") / np.where(volume > 0, volume, 1), 0.5)


def _returns(hours: int) -> Feature:
    return Feature(hours, lambda s: ind.log_return(s.log_close, hours))


def _ewma(span: int) -> Feature:
    return Feature(ind.ewma_length(span) - 1, lambda s: ind.ewma_ratio(s.close, span))


def _volatility(hours: int) -> Feature:
    return Feature(hours, lambda s: ind.realised_volatility(s.ret, hours))


def _relative(hours: int) -> Feature:
    return Feature(hours, lambda s: s.relative_return(hours), context_only=True)


RSI_HOURS, BOLLINGER_HOURS, VOLUME_Z_HOURS, CCI_HOURS = 14, 20, 24, 20
FORCE_HOURS, FORCE_VOLUME_HOURS = 13, 24
GAP_FEATURE = "gap"

FEATURES: dict[str, Feature] = {
    # reference set (spec version 1): names and values frozen
    "log_close": Feature(0, lambda s: s.log_close),
    "log_volume": Feature(0, lambda s: s.log_volume),
    "log_count": Feature(0, lambda s: np.log1p(np.where(s.present, s.column("count"), 0.0)), column="count"),
    "taker_buy_ratio": Feature(0, _taker_buy_ratio, column="taker_buy_volume"),
    "ret_1h": Feature(1, lambda s: s.ret),
    "volume_z": Feature(VOLUME_Z_HOURS - 1, lambda s: ind.band_position(s.log_volume, VOLUME_Z_HOURS, 1.0)),
    "rsi": Feature(RSI_HOURS, lambda s: ind.rsi(s.ret, RSI_HOURS)),
    "bollinger": Feature(BOLLINGER_HOURS - 1, lambda s: ind.band_position(s.close, BOLLINGER_HOURS, 2.0)),
    "roc_24h": _returns(24),
    GAP_FEATURE: Feature(0, lambda s: (~s.present).astype(np.float64)),
    # indicators
    "ret_4h": _returns(4),
    "ret_24h": _returns(24),
    "ret_168h": _returns(168),
    "cci": Feature(CCI_HOURS - 1, lambda s: ind.cci(s.filled("high"), s.filled("low"), s.close, CCI_HOURS)),
    "ewma_ratio_12h": _ewma(12),
    "ewma_ratio_48h": _ewma(48),
    "ewma_ratio_168h": _ewma(168),
    "force_index": Feature(
        FORCE_HOURS - 1 + max(1, FORCE_VOLUME_HOURS - 1),
        lambda s: ind.force_index(s.ret, s.volume, FORCE_HOURS, FORCE_VOLUME_HOURS),
    ),
    "rvol_24h": _volatility(24),
    "rvol_168h": _volatility(168),
    "rel_ret_1h": _relative(1),
    "rel_ret_24h": _relative(24),
}

REFERENCE_SET = (
    "log_close",
    "log_volume",
    "log_count",
    "taker_buy_ratio",
    "ret_1h",
    "volume_z",
    "rsi",
    "bollinger",
    "roc_24h",
    GAP_FEATURE,
)
INDICATOR_SET = (
    "ret_1h",
    "ret_4h",
    "ret_24h",
    "ret_168h",
    "rsi",
    "cci",
    "bollinger",
    "ewma_ratio_12h",
    "ewma_ratio_48h",
    "ewma_ratio_168h",
    "force_index",
    "rvol_24h",
    "rvol_168h",
    "volume_z",
    "taker_buy_ratio",
    "rel_ret_1h",
    "rel_ret_24h",
    GAP_FEATURE,
)
#: ``reference`` + the indicators it lacks (``ret_24h`` is ``roc_24h`` under another name).
EXTENDED_SET = (
    REFERENCE_SET[:-1]
    + tuple(name for name in INDICATOR_SET if name not in REFERENCE_SET and name != "ret_24h")
    + (GAP_FEATURE,)
)
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "reference": REFERENCE_SET,
    "indicators": INDICATOR_SET,
    "extended": EXTENDED_SET,
}
DEFAULT_FEATURE_SET = "reference"


def resolve_feature_set(name: str, symbol: str, traded_symbol: str, optional: tuple[str, ...]) -> tuple[str, ...]:
    """The features of set ``name`` that ``symbol`` gets: those whose kline column it has (``optional``:
    the optional feature names its training klines support) and, for the traded symbol, no context-only
    feature."""
    if name not in FEATURE_SETS:
        raise KeyError(name)
    return tuple(
        feature
        for feature in FEATURE_SETS[name]
        if (FEATURES[feature].column is None or feature in optional)
        and not (FEATURES[feature].context_only and symbol == traded_symbol)
    )
