"""A frozen copy of the version-1 feature computation (models/features.py at main b680bc2, before feature
sets existed), kept only to prove that version-1 specs still compute exactly the same values.

Do not edit the arithmetic: the test compares it bit for bit with today's transform. It takes the
spec's dictionary (as saved in policy.json) rather than a FeatureSpec, so it does not depend on the
code under test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

HOUR_MS = 3_600_000
WARMUP_HOURS, RSI_HOURS, BOLLINGER_HOURS, VOLUME_Z_HOURS = 24, 14, 20, 24


def _trailing(values: np.ndarray, hours: int) -> np.ndarray:
    padded = np.concatenate([np.full(hours - 1, np.nan), values])
    return sliding_window_view(padded, hours)


def version1_columns(spec: dict[str, Any]) -> list[str]:
    """Column names of a version-1 spec dictionary, in state order."""
    names = []
    for symbol in spec["symbols"]:
        optional = list(spec.get("optional", {}).get(symbol, ()))
        per_symbol = ["log_close", "log_volume", *optional, "ret_1h", "volume_z", "rsi", "bollinger", "roc_24h", "gap"]
        names += [f"{symbol}:{name}" for name in per_symbol]
    return names


def _symbol_features(rows: pd.DataFrame, grid: np.ndarray, optional: list[str]) -> tuple[np.ndarray, np.ndarray]:
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
    if "log_count" in optional:
        columns["log_count"] = np.log1p(np.where(present, on_grid("count"), 0.0))
    if "taker_buy_ratio" in optional:
        taker = on_grid("taker_buy_volume")
        columns["taker_buy_ratio"] = np.where(present & (volume > 0), taker / np.where(volume > 0, volume, 1), 0.5)
    columns.update(ret_1h=ret, volume_z=volume_z, rsi=rsi, bollinger=bollinger, roc_24h=roc)
    columns["gap"] = (~present).astype(np.float64)
    order = ["log_close", "log_volume", *optional, "ret_1h", "volume_z", "rsi", "bollinger", "roc_24h", "gap"]
    return np.stack([columns[name] for name in order], axis=1), close


def version1_table(frame: pd.DataFrame, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(open_time grid, feature values [T, F], traded close) exactly as version-1 code computed them."""
    times = frame.loc[frame["symbol"].isin(spec["symbols"]), "open_time"].to_numpy(dtype=np.int64)
    grid = np.arange(times.min(), times.max() + HOUR_MS, HOUR_MS, dtype=np.int64)
    parts, closes = [], np.zeros(0)
    for symbol in spec["symbols"]:
        rows = frame[frame["symbol"] == symbol].sort_values("open_time")
        values, close = _symbol_features(rows, grid, list(spec.get("optional", {}).get(symbol, ())))
        parts.append(values)
        if symbol == spec["traded_symbol"]:
            closes = close
    return grid, np.concatenate(parts, axis=1), closes
