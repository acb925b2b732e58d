"""Dataset building: a contract-form kline frame + date ranges → aligned, normalised feature arrays.

The frame may come from a folder of kline files (:func:`load_klines`, via ``read_kline_folder``) or
from the kline lake; anything in the contract form of models/kline.py works. Features are computed
once on the whole frame (so a test range has its history before it); the normalisation is fitted
on the training range only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from adapters.kline_files import read_kline_folder
from models.errors import PermanentError
from models.features import FeatureSpec, FeatureTable, Normalizer, compute_feature_table, infer_spec, state_rows
from models.features import window_index as _window_index
from models.settings import DEFAULT_SYMBOLS

logger = logging.getLogger(__name__)


class RangeError(PermanentError):
    """A date range is malformed or selects no usable hours."""


@dataclass(frozen=True)
class TimeRange:
    """Half-open range of open_time ``[start_ms, end_ms)``."""

    start_ms: int
    end_ms: int
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.start_ms}:{self.end_ms}"


def _parse_time(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RangeError(f"{text!r} is not an ISO date such as 2021-01-01 or 2021-01-01T00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_range(text: str) -> TimeRange:
    """``"2021-01-01:2022-01-01"`` (UTC, end exclusive) → :class:`TimeRange`."""
    if text.count(":") != 1 and "T" not in text:
        raise RangeError(f"range {text!r} must look like START:END, e.g. 2021-01-01:2022-01-01")
    start_text, _, end_text = text.partition(":") if "T" not in text else _split_iso_range(text)
    start, end = _parse_time(start_text), _parse_time(end_text)
    if end <= start:
        raise RangeError(f"range {text!r} ends before it starts")
    return TimeRange(start, end, text)


def _split_iso_range(text: str) -> tuple[str, str, str]:
    # with times ("2021-01-01T00:00:2021-02-01T00:00") split at the ':' that precedes a date
    for i, char in enumerate(text):
        if char == ":" and len(text) > i + 5 and text[i + 1 : i + 5].isdigit() and text[i + 5 : i + 6] == "-":
            return text[:i], ":", text[i + 1 :]
    raise RangeError(f"range {text!r} must look like START:END")


def load_klines(data_dir: Path | str, symbols: tuple[str, ...] = DEFAULT_SYMBOLS) -> pd.DataFrame:
    """Klines of ``symbols`` from ``<data_dir>/<SYMBOL>.csv`` (contract form)."""
    return read_kline_folder(data_dir, symbols)


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
) -> MarketDataset:
    """Compute features of ``frame`` and fit the normalisation on the ``train`` range."""
    in_train = (frame["open_time"] >= train.start_ms) & (frame["open_time"] < train.end_ms)
    if not in_train.any():
        raise RangeError(f"no klines in the training range {train}")
    spec = spec or infer_spec(frame[in_train], symbols, traded_symbol, window)
    table = compute_feature_table(frame, spec)
    train_mask = (table.open_time >= train.start_ms) & (table.open_time < train.end_ms)
    normalizer = Normalizer.fit(table, spec, train_mask)
    gaps = int((~table.tradable).sum())
    logger.info("dataset hours=%d gap_hours=%d features=%d train=%s", len(table), gaps, spec.n_features, train)
    return MarketDataset(spec, normalizer, table, normalizer.transform(table.values), state_rows(table, spec.window))
