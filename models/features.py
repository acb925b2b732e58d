"""The one feature transform: hourly klines of the context symbols → float32 states.

Training, evaluation, the MLflow pyfunc and the live stream all call :func:`compute_feature_table`
and :class:`Normalizer`, so a stream decision equals the backtest decision on the same klines.

Per symbol and hour (columns named ``<SYMBOL>:<feature>``):

- reference features (the reference system's close, volume, trade count, taker-buy volume):
  ``log_close``, ``log_volume``, ``log_count``, ``taker_buy_ratio``. ``count`` and
  ``taker_buy_volume`` are optional in the kline contract: a symbol uses them only when its
  training klines have them (decided by :func:`infer_spec`, stored in the spec); values are never
  invented.
- scale-free features: ``ret_1h`` (log return), ``volume_z`` (24 h z-score of log volume),
  ``rsi`` (14 h, simple averages, scaled to [-1, 1]), ``bollinger`` (position in the 20 h band,
  ±1 at ±2 std), ``roc_24h`` (24 h log rate of change).
- ``gap``: 1.0 where the hour is missing for that symbol (an exchange outage) and was filled.

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

All rolling statistics use fixed trailing windows (no exponential smoothing with infinite memory),
so the row for hour ``t`` depends only on klines with ``open_time`` in ``[t - WARMUP_HOURS, t]``:
there is no look-ahead, and :data:`WARMUP_HOURS` + ``window`` hours of history reproduce a state
exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from models.errors import PermanentError
from models.kline import HOUR_MS
from models.settings import DEFAULT_SYMBOLS

FEATURE_SPEC_VERSION = 1
#: Hours of history a feature row needs before it is defined (the 24 h rate of change).
WARMUP_HOURS = 24
RSI_HOURS = 14
BOLLINGER_HOURS = 20
VOLUME_Z_HOURS = 24
REFERENCE_FEATURES = ("log_close", "log_volume")
OPTIONAL_FEATURES = {"log_count": "count", "taker_buy_ratio": "taker_buy_volume"}
SCALE_FREE_FEATURES = ("ret_1h", "volume_z", "rsi", "bollinger", "roc_24h")
GAP_FEATURE = "gap"
#: Features of the agent's own account appended to the market window (see :func:`account_features`).
ACCOUNT_FEATURES = ("exposure", "entry_return", "can_buy")


class FeatureError(PermanentError):
    """Klines cannot be turned into features (missing symbol, too little history, bad spec)."""


@dataclass(frozen=True)
class FeatureSpec:
    """What the transform computes; serialised with every model."""

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    traded_symbol: str = "BTCUSDT"
    window: int = 10
    optional: dict[str, tuple[str, ...]] = field(default_factory=dict)
    account: bool = True
    version: int = FEATURE_SPEC_VERSION

    def __post_init__(self) -> None:
        if self.traded_symbol not in self.symbols:
            raise FeatureError(f"traded symbol {self.traded_symbol} is not among {self.symbols}")
        if self.window < 1:
            raise FeatureError(f"window must be >= 1, got {self.window}")
        if self.version != FEATURE_SPEC_VERSION:
            raise FeatureError(f"feature spec version {self.version} is not {FEATURE_SPEC_VERSION}")

    def symbol_features(self, symbol: str) -> tuple[str, ...]:
        """Feature names of one symbol, in column order."""
        return REFERENCE_FEATURES + tuple(self.optional.get(symbol, ())) + SCALE_FREE_FEATURES + (GAP_FEATURE,)

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
    def history_hours(self) -> int:
        """Hours of klines per symbol needed to build the latest state."""
        return WARMUP_HOURS + self.window

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["symbols"] = list(self.symbols)
        data["optional"] = {k: list(v) for k, v in self.optional.items()}
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
        )


def infer_spec(
    frame: pd.DataFrame,
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS,
    traded_symbol: str = "BTCUSDT",
    window: int = 10,
    account: bool = True,
) -> FeatureSpec:
    """A spec whose optional features are those every kline of the symbol in ``frame`` has."""
    optional: dict[str, tuple[str, ...]] = {}
    for symbol in symbols:
        rows = frame[frame["symbol"] == symbol]
        if rows.empty:
            raise FeatureError(f"no klines for {symbol}")
        present = tuple(name for name, col in OPTIONAL_FEATURES.items() if col in rows and rows[col].notna().all())
        if present:
            optional[symbol] = present
    return FeatureSpec(
        symbols=tuple(symbols), traded_symbol=traded_symbol, window=window, optional=optional, account=account
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


def _trailing(values: np.ndarray, hours: int) -> np.ndarray:
    """Windows of the last ``hours`` values ending at each row (NaN-padded at the start)."""
    padded = np.concatenate([np.full(hours - 1, np.nan), values])
    return sliding_window_view(padded, hours)


def _symbol_features(
    rows: pd.DataFrame, grid: np.ndarray, spec: FeatureSpec, symbol: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature rows [T, F_symbol], close carried over gaps [T], kline present [T])."""
    position = np.searchsorted(grid, rows["open_time"].to_numpy())
    present = np.zeros(len(grid), dtype=bool)
    present[position] = True

    def on_grid(column: str) -> np.ndarray:
        out = np.full(len(grid), np.nan)
        out[position] = rows[column].to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    close = pd.Series(on_grid("close")).ffill().to_numpy()
    volume = np.where(present, on_grid("volume"), 0.0)
    log_close = np.log(close)
    log_volume = np.log1p(volume)
    ret = np.concatenate([[np.nan], np.diff(log_close)])
    gains, losses = _trailing(np.maximum(ret, 0.0), RSI_HOURS), _trailing(np.maximum(-ret, 0.0), RSI_HOURS)
    up, down = gains.mean(axis=1), losses.mean(axis=1)
    total = up + down
    rsi = np.where(total > 0, (up - down) / np.where(total > 0, total, 1.0), 0.0)
    rsi[np.isnan(total)] = np.nan
    band = _trailing(close, BOLLINGER_HOURS)
    band_std = band.std(axis=1)
    bollinger = np.where(band_std > 0, (close - band.mean(axis=1)) / (2 * np.where(band_std > 0, band_std, 1)), 0.0)
    bollinger[np.isnan(band_std)] = np.nan
    vol_window = _trailing(log_volume, VOLUME_Z_HOURS)
    vol_std = vol_window.std(axis=1)
    volume_z = np.where(vol_std > 0, (log_volume - vol_window.mean(axis=1)) / np.where(vol_std > 0, vol_std, 1), 0.0)
    volume_z[np.isnan(vol_std)] = np.nan
    roc = np.full(len(grid), np.nan)
    roc[WARMUP_HOURS:] = log_close[WARMUP_HOURS:] - log_close[:-WARMUP_HOURS]
    columns = {"log_close": log_close, "log_volume": log_volume}
    if "log_count" in spec.optional.get(symbol, ()):
        columns["log_count"] = np.log1p(np.where(present, on_grid("count"), 0.0))
    if "taker_buy_ratio" in spec.optional.get(symbol, ()):
        taker = on_grid("taker_buy_volume")
        columns["taker_buy_ratio"] = np.where(present & (volume > 0), taker / np.where(volume > 0, volume, 1), 0.5)
    columns.update(ret_1h=ret, volume_z=volume_z, rsi=rsi, bollinger=bollinger, roc_24h=roc)
    columns[GAP_FEATURE] = (~present).astype(np.float64)
    for name in OPTIONAL_FEATURES:
        if name in columns and np.isnan(columns[name][present]).any():
            bad = grid[present][np.isnan(columns[name][present])][:3]
            raise FeatureError(
                f"{symbol}: {OPTIONAL_FEATURES[name]} missing at open_time {bad.tolist()} (spec needs it)"
            )
    return np.stack([columns[name] for name in spec.symbol_features(symbol)], axis=1), close, present


def compute_feature_table(frame: pd.DataFrame, spec: FeatureSpec) -> FeatureTable:
    """Feature rows for every hour of the common grid of ``frame`` (a contract-form kline frame)."""
    parts, present_traded, closes = [], np.zeros(0, dtype=bool), np.zeros(0)
    times = frame.loc[frame["symbol"].isin(spec.symbols), "open_time"].to_numpy(dtype=np.int64)
    if times.size == 0:
        raise FeatureError(f"no klines for the context symbols {spec.symbols}")
    grid = np.arange(times.min(), times.max() + HOUR_MS, HOUR_MS, dtype=np.int64)
    for symbol in spec.symbols:
        rows = frame[frame["symbol"] == symbol].sort_values("open_time")
        if rows.empty:
            raise FeatureError(f"no klines for {symbol} in the input")
        if rows["open_time"].duplicated().any() or (rows["open_time"].to_numpy() % HOUR_MS != 0).any():
            raise FeatureError(f"{symbol}: duplicate or off-grid open_time")
        values, close, present = _symbol_features(rows, grid, spec, symbol)
        parts.append(values)
        if symbol == spec.traded_symbol:
            present_traded, closes = present, close
    values = np.concatenate(parts, axis=1)
    # a leading gap (a symbol starting later than the grid) leaves NaN closes: not valid rows
    valid = np.isfinite(values).all(axis=1)
    return FeatureTable(grid, values, closes, present_traded & np.isfinite(closes), valid)


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
