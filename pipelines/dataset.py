"""Dataset building: a contract-form kline frame + date ranges → aligned, normalised feature arrays.

The frame may come from a folder of kline files (:func:`adapters.kline_files.read_kline_folder`) or
from the kline lake; anything in the contract form of models/kline.py works. Features are computed
once on the whole frame (so a test range has its history before it); the normalisation is fitted
on the training range only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.feature_sets import DEFAULT_FEATURE_SET
from models.features import FeatureSpec, FeatureTable, Normalizer, compute_feature_table, infer_spec, state_rows
from models.features import window_index as _window_index
from models.settings import DEFAULT_SYMBOLS
from models.time_range import RangeError, TimeRange

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarketDataset:
    """Feature table of a frame + the normalisation fitted on the training range."""

    spec: FeatureSpec
    normalizer: Normalizer
    table: FeatureTable
    rows: np.ndarray  # float32 [T, F] normalised feature rows
    has_state: np.ndarray  # bool [T]

    def range_rows(self, time_range: TimeRange) -> np.ndarray:
        """Rows with a state whose open_time lies in ``time_range`` (sorted)."""
        inside = (self.table.open_time >= time_range.start_ms) & (self.table.open_time < time_range.end_ms)
        rows = np.flatnonzero(inside & self.has_state)
        if len(rows) < 2:
            raise RangeError(f"range {time_range} has {len(rows)} hours with a state in the klines given")
        return rows

    def windows(self, upto: int | None = None) -> np.ndarray:
        """float32 ``[T, window, F]`` state of every row up to ``upto`` (rows without a state are 0)."""
        count = len(self.rows) if upto is None else upto + 1
        index = np.clip(_window_index(np.arange(count), self.spec.window), 0, None)
        out = self.rows[index]
        out[~self.has_state[:count]] = 0.0
        return out


def build_dataset(
    frame: pd.DataFrame,
    train: TimeRange,
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS,
    traded_symbol: str = "BTCUSDT",
    window: int = 10,
    spec: FeatureSpec | None = None,
    feature_set: str = DEFAULT_FEATURE_SET,
) -> MarketDataset:
    """Compute features of ``frame`` and fit the normalisation on the ``train`` range (the spec, unless
    given, is ``feature_set`` with the optional features the training klines have)."""
    in_train = (frame["open_time"] >= train.start_ms) & (frame["open_time"] < train.end_ms)
    if not in_train.any():
        raise RangeError(f"no klines in the training range {train}")
    spec = spec or infer_spec(frame[in_train], symbols, traded_symbol, window, feature_set=feature_set)
    table = compute_feature_table(frame, spec)
    train_mask = (table.open_time >= train.start_ms) & (table.open_time < train.end_ms)
    normalizer = Normalizer.fit(table, spec, train_mask)
    gaps = int((~table.tradable).sum())
    logger.info("dataset hours=%d gap_hours=%d features=%d train=%s", len(table), gaps, spec.n_features, train)
    return MarketDataset(spec, normalizer, table, normalizer.transform(table.values), state_rows(table, spec.window))
