"""The one feature transform: hourly klines of the context symbols → float32 states.

Training, evaluation, the MLflow pyfunc and the live stream all call :func:`compute_feature_table`
and :class:`Normalizer`, so a stream decision equals the backtest decision on the same klines.

Per symbol and hour (columns named ``<SYMBOL>:<feature>``) the spec lists the features by name; the
catalogue, its formulas and lookbacks, and the named sets are in models/feature_sets.py and
models/indicators.py. The sets:

- ``reference`` (the default, and every model saved with spec version 1): the reference system's
  close, volume, trade count and taker-buy volume — ``log_close``, ``log_volume``, ``log_count``,
  ``taker_buy_ratio`` — plus ``ret_1h`` (log return), ``volume_z`` (24 h z-score of log volume),
  ``rsi`` (14 h, simple averages, scaled to [-1, 1]), ``bollinger`` (position in the 20 h band, ±1 at
  ±2 std), ``roc_24h`` (24 h log rate of change) and ``gap``. ``count`` and ``taker_buy_volume`` are
  optional in the kline contract: a symbol uses them only when its training klines have them
  (decided by :func:`infer_spec`, stored in the spec); values are never invented.
- ``indicators``: scale-free indicators only (multi-horizon returns, RSI, CCI, Bollinger, EWMA
  ratios, force index, realised volatility, volume z-score, taker-buy ratio, returns relative to the
  traded symbol); ``extended``: ``reference`` plus those indicators.
- ``gap``: 1.0 where the hour is missing for that symbol (an exchange outage) and was filled.

Versions: a version-2 spec stores its set's name and the exact feature names of every symbol, so a
model always gets the features it was trained with even if a named set changes later. A version-1
spec (saved before feature sets existed) has no list: it computes the reference set in the order of
its ``optional`` features, exactly as before.

The state is the window of the last ``window`` feature rows plus, when ``spec.account`` (default),
three features of the agent's own account (:func:`account_features`: exposure, return of what the
next sell would close, whether a buy can execute). The reference system's state had market features
only; with its sell-only reward every action then leads to the same next state and the greedy policy
degenerates to "always sell" (never trading), so Klinestream adds the account by default
(``account=False`` keeps the reference's market-only state).

Gaps: symbols are aligned on the common hourly grid from the first to the last open_time. A missing
hour is filled by carrying the last close forward (return 0, volume features 0) and flagged with
``gap`` = 1; the traded symbol's missing hours are not tradable (the environment forces hold). So a
window that straddles an outage carries the flag explicitly instead of silently joining two ends.

All rolling statistics use fixed trailing windows (the EWMA is truncated explicitly; no smoothing
has an infinite memory), so the row for hour ``t`` depends only on klines with ``open_time`` in
``[t - L, t]`` where ``L`` is the longest lookback of the spec's features (:attr:`FeatureSpec.warmup_hours`;
24 for the reference set): there is no look-ahead, and :attr:`FeatureSpec.history_hours` =
``L + window`` hours of history reproduce a state exactly (an outage at the very start of those hours
leaves no state rather than a different one).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from models.errors import PermanentError
from models.feature_sets import (
    DEFAULT_FEATURE_SET,
    FEATURE_SETS,
    FEATURES,
    GAP_FEATURE,
    SymbolSeries,
    resolve_feature_set,
)
from models.kline import HOUR_MS
from models.settings import DEFAULT_SYMBOLS

#: Version of the specs this code writes; it reads every version in :data:`READABLE_SPEC_VERSIONS`.
FEATURE_SPEC_VERSION = 2
READABLE_SPEC_VERSIONS = (1, 2)
#: Hours of history a feature row of the reference set needs (its 24 h rate of change).
WARMUP_HOURS = 24
REFERENCE_FEATURES = ("log_close", "log_volume")
#: Optional feature → the optional kline column it needs.
OPTIONAL_FEATURES = {name: f.column for name, f in FEATURES.items() if f.column is not None}
SCALE_FREE_FEATURES = ("ret_1h", "volume_z", "rsi", "bollinger", "roc_24h")
#: Features of the agent's own account appended to the market window (see :func:`account_features`).
ACCOUNT_FEATURES = ("exposure", "entry_return", "can_buy")


class FeatureError(PermanentError):
    """Klines cannot be turned into features (missing symbol, too little history, bad spec)."""


def _version1_features(optional: tuple[str, ...]) -> tuple[str, ...]:
    """The per-symbol features of a version-1 spec (the reference set, optional ones in stored order)."""
    return REFERENCE_FEATURES + tuple(optional) + SCALE_FREE_FEATURES + (GAP_FEATURE,)


@dataclass(frozen=True)
class FeatureSpec:
    """What the transform computes; serialised with every model."""

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    traded_symbol: str = "BTCUSDT"
    window: int = 10
    optional: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Optional features (``log_count``, ``taker_buy_ratio``) each symbol's training klines support."""
    account: bool = True
    version: int = FEATURE_SPEC_VERSION
    feature_set: str = DEFAULT_FEATURE_SET
    """Name of the set the features were resolved from (provenance; the list below is what counts)."""
    features: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Exact feature names of every symbol, in column order. Left empty, it is resolved from
    ``feature_set`` at construction (and from ``optional`` alone for a version-1 spec)."""

    def __post_init__(self) -> None:
        if self.traded_symbol not in self.symbols:
            raise FeatureError(f"traded symbol {self.traded_symbol} is not among {self.symbols}")
        if self.window < 1:
            raise FeatureError(f"window must be >= 1, got {self.window}")
        if self.version not in READABLE_SPEC_VERSIONS:
            raise FeatureError(f"feature spec version {self.version} is not one of {READABLE_SPEC_VERSIONS}")
        if not self.features:
            object.__setattr__(self, "features", {s: self._resolve(s) for s in self.symbols})
        elif self.version == 1 and self.features != {s: self._resolve(s) for s in self.symbols}:
            raise FeatureError("a version-1 feature spec has the reference features only (no feature list)")
        if self.version == 1 and self.feature_set != DEFAULT_FEATURE_SET:
            raise FeatureError(f"a version-1 feature spec has no feature set ({self.feature_set!r} given)")
        self._check_features()

    def _resolve(self, symbol: str) -> tuple[str, ...]:
        optional = tuple(self.optional.get(symbol, ()))
        if self.version == 1:
            return _version1_features(optional)
        try:
            return resolve_feature_set(self.feature_set, symbol, self.traded_symbol, optional)
        except KeyError:
            raise FeatureError(f"unknown feature set {self.feature_set!r}; known: {sorted(FEATURE_SETS)}") from None

    def _check_features(self) -> None:
        if set(self.features) != set(self.symbols):
            raise FeatureError(f"feature lists are given for {sorted(self.features)}, not for {list(self.symbols)}")
        for symbol, names in self.features.items():
            unknown = [n for n in names if n not in FEATURES]
            if unknown:
                raise FeatureError(
                    f"{symbol}: unknown features {unknown} (a model saved by a newer Klinestream?); "
                    f"known: {sorted(FEATURES)}"
                )
            if len(set(names)) != len(names):
                raise FeatureError(f"{symbol}: a feature is listed twice in {list(names)}")
            for name in names:
                if FEATURES[name].column is not None and name not in self.optional.get(symbol, ()):
                    raise FeatureError(f"{symbol}: {name} needs {FEATURES[name].column}, which the spec does not have")
                if FEATURES[name].context_only and symbol == self.traded_symbol:
                    raise FeatureError(f"{symbol}: {name} is defined for the context symbols only")

    def symbol_features(self, symbol: str) -> tuple[str, ...]:
        """Feature names of one symbol, in column order."""
        return self.features[symbol]

    @property
    def columns(self) -> tuple[str, ...]:
        """All feature column names ``SYMBOL:feature``, in state order."""
        return tuple(f"{s}:{f}" for s in self.symbols for f in self.symbol_features(s))

    @property
    def n_features(self) -> int:
        return len(self.columns)

    @property
    def n_account(self) -> int:
        """Number of account features (0 = market-only state, as in the reference system)."""
        return len(ACCOUNT_FEATURES) if self.account else 0

    @property
    def state_size(self) -> int:
        """Length of the flat state of the linear network (window × features + account features)."""
        return self.window * self.n_features + self.n_account

    @property
    def warmup_hours(self) -> int:
        """Longest lookback of the spec's features: hours of history a feature row needs."""
        return max(FEATURES[name].lookback for names in self.features.values() for name in names)

    @property
    def history_hours(self) -> int:
        """Hours of klines per symbol needed to build the latest state."""
        return self.warmup_hours + self.window

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["symbols"] = list(self.symbols)
        data["optional"] = {k: list(v) for k, v in self.optional.items()}
        data["features"] = {k: list(v) for k, v in self.features.items()}
        if self.version == 1:  # written exactly as version-1 code wrote it
            del data["features"], data["feature_set"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            symbols=tuple(data["symbols"]),
            traded_symbol=str(data["traded_symbol"]),
            window=int(data["window"]),
            optional={k: tuple(v) for k, v in data.get("optional", {}).items()},
            account=bool(data.get("account", True)),
            version=int(data["version"]),
            feature_set=str(data.get("feature_set", DEFAULT_FEATURE_SET)),
            features={k: tuple(v) for k, v in data.get("features", {}).items()},
        )


def infer_spec(
    frame: pd.DataFrame,
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS,
    traded_symbol: str = "BTCUSDT",
    window: int = 10,
    account: bool = True,
    feature_set: str = DEFAULT_FEATURE_SET,
) -> FeatureSpec:
    """A spec of the named ``feature_set`` whose optional features are those every kline of the
    symbol in ``frame`` has."""
    optional: dict[str, tuple[str, ...]] = {}
    for symbol in symbols:
        rows = frame[frame["symbol"] == symbol]
        if rows.empty:
            raise FeatureError(f"no klines for {symbol}")
        present = tuple(name for name, col in OPTIONAL_FEATURES.items() if col in rows and rows[col].notna().all())
        if present:
            optional[symbol] = present
    return FeatureSpec(
        symbols=tuple(symbols),
        traded_symbol=traded_symbol,
        window=window,
        optional=optional,
        account=account,
        feature_set=feature_set,
    )


@dataclass(frozen=True)
class FeatureTable:
    """Feature rows on the common hourly grid (not normalised)."""

    open_time: np.ndarray  # int64 [T], ms
    values: np.ndarray  # float64 [T, F]; NaN during warm-up
    close: np.ndarray  # float64 [T], traded symbol's close (carried over gaps)
    tradable: np.ndarray  # bool [T], the traded symbol's kline exists at that hour
    valid: np.ndarray  # bool [T], every feature of the row is defined

    def __len__(self) -> int:
        return len(self.open_time)


def _symbol_series(rows: pd.DataFrame, grid: np.ndarray, traded_log_close: np.ndarray | None) -> SymbolSeries:
    """One symbol's klines on ``grid`` (close carried over gaps)."""
    position = np.searchsorted(grid, rows["open_time"].to_numpy())
    present = np.zeros(len(grid), dtype=bool)
    present[position] = True

    def on_grid(column: str) -> np.ndarray:
        out = np.full(len(grid), np.nan)
        out[position] = rows[column].to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    close = pd.Series(on_grid("close")).ffill().to_numpy()
    return SymbolSeries(present, close, on_grid, traded_log_close)


def _symbol_features(series: SymbolSeries, grid: np.ndarray, spec: FeatureSpec, symbol: str) -> np.ndarray:
    """Feature rows ``[T, F_symbol]`` of one symbol, in the spec's column order."""
    columns = []
    for name in spec.symbol_features(symbol):
        values = FEATURES[name].compute(series)
        if name in OPTIONAL_FEATURES and np.isnan(values[series.present]).any():
            bad = grid[series.present][np.isnan(values[series.present])][:3]
            raise FeatureError(
                f"{symbol}: {OPTIONAL_FEATURES[name]} missing at open_time {bad.tolist()} (spec needs it)"
            )
        columns.append(values)
    return np.stack(columns, axis=1)


def _symbol_rows(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    rows = frame[frame["symbol"] == symbol].sort_values("open_time")
    if rows.empty:
        raise FeatureError(f"no klines for {symbol} in the input")
    if rows["open_time"].duplicated().any() or (rows["open_time"].to_numpy() % HOUR_MS != 0).any():
        raise FeatureError(f"{symbol}: duplicate or off-grid open_time")
    return rows


def compute_feature_table(frame: pd.DataFrame, spec: FeatureSpec) -> FeatureTable:
    """Feature rows for every hour of the common grid of ``frame`` (a contract-form kline frame)."""
    times = frame.loc[frame["symbol"].isin(spec.symbols), "open_time"].to_numpy(dtype=np.int64)
    if times.size == 0:
        raise FeatureError(f"no klines for the context symbols {spec.symbols}")
    grid = np.arange(times.min(), times.max() + HOUR_MS, HOUR_MS, dtype=np.int64)
    traded = _symbol_series(_symbol_rows(frame, spec.traded_symbol), grid, None)
    parts = []
    for symbol in spec.symbols:
        if symbol == spec.traded_symbol:
            series = traded
        else:
            series = _symbol_series(_symbol_rows(frame, symbol), grid, traded.log_close)
        parts.append(_symbol_features(series, grid, spec, symbol))
    values = np.concatenate(parts, axis=1)
    # a leading gap (a symbol starting later than the grid) leaves NaN closes: not valid rows
    valid = np.isfinite(values).all(axis=1)
    return FeatureTable(grid, values, traded.close, traded.present & np.isfinite(traded.close), valid)


@dataclass(frozen=True)
class Normalizer:
    """Per-column z-score fitted on the training range only; the gap flags pass through unchanged."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, table: FeatureTable, spec: FeatureSpec, rows: np.ndarray | slice | None = None) -> Normalizer:
        values = table.values if rows is None else table.values[rows]
        valid = table.valid if rows is None else table.valid[rows]
        values = values[valid]
        if len(values) < 2:
            raise FeatureError("too few valid rows to fit the normalisation")
        mean, std = values.mean(axis=0), values.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        flags = np.array([c.endswith(f":{GAP_FEATURE}") for c in spec.columns])
        mean[flags], std[flags] = 0.0, 1.0
        return cls(mean, std)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Normalised float32 rows; undefined (warm-up) values become 0."""
        out = ((values - self.mean) / self.std).astype(np.float32)
        out[~np.isfinite(out)] = 0.0
        return out

    def to_json(self) -> str:
        return json.dumps({"mean": self.mean.tolist(), "std": self.std.tolist()})

    @classmethod
    def from_json(cls, text: str) -> Normalizer:
        data = json.loads(text)
        return cls(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["std"], dtype=np.float64))


def window_index(rows: np.ndarray, window: int) -> np.ndarray:
    """``[len(rows), window]`` indices of the feature rows ending at each of ``rows`` (oldest first)."""
    return np.asarray(rows)[:, None] + np.arange(-window + 1, 1)[None, :]


def state_rows(table: FeatureTable, window: int) -> np.ndarray:
    """Mask of rows whose whole window of feature rows is defined (a state exists at that hour)."""
    ok = table.valid.copy()
    ok[: window - 1] = False
    if window > 1:
        ok[window - 1 :] = sliding_window_view(table.valid, window).all(axis=1)
    return ok


def account_features(exposure: np.ndarray, entry_return: np.ndarray, can_buy: np.ndarray) -> np.ndarray:
    """float32 ``[..., 3]`` account features, the same for the environment, backtest and stream.

    ``exposure``: value of the held asset / equity (0 = flat, 1 = all in); ``entry_return``: close /
    entry price − 1 of what the next sell closes (the oldest FIFO unit, or the average entry of a
    portfolio position; 0 when flat), scaled ×10 and clipped to ±5; ``can_buy``: 1 when a buy would
    execute (cash and position limits allow it).
    """
    scaled = np.clip(np.asarray(entry_return, dtype=np.float64) * 10.0, -5.0, 5.0)
    return np.stack(
        [np.asarray(exposure, dtype=np.float64), scaled, np.asarray(can_buy, dtype=np.float64)], axis=-1
    ).astype(np.float32)


FLAT_ACCOUNT = np.array([0.0, 0.0, 1.0], dtype=np.float32)
"""Account features of a flat account with cash (the default when no account is given)."""
