"""What the exchange simulator serves: klines in memory, and the replay clock.

Klines come from a folder of kline files (header CSVs or Binance Vision dumps) or from the lake, and are
kept per symbol as numpy columns sorted by open time. Values a source lacks stay ``None`` on the wire
(real Binance always sends them; the simulator never invents them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.kline import COLUMNS, HOUR_MS, conform_frame

_INT_COLUMNS = ("open_time", "close_time", "count")


@dataclass(frozen=True)
class SymbolKlines:
    """One symbol's klines as columns (float64; NaN = the source lacks the value)."""

    open_time: np.ndarray  # int64, sorted
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.open_time)


def format_number(value: float) -> str | None:
    """A number as Binance writes it: a decimal string (shortest that round-trips); NaN → None."""
    if value != value:  # NaN
        return None
    return np.format_float_positional(value, trim="-")


class KlineStore:
    """Klines of several symbols, searchable by open time."""

    def __init__(self, frame: pd.DataFrame) -> None:
        frame = conform_frame(frame)
        self._symbols: dict[str, SymbolKlines] = {}
        for symbol, rows in frame.groupby("symbol", sort=True):
            values = {c: rows[c].to_numpy(dtype="float64", na_value=np.nan) for c in COLUMNS}
            self._symbols[str(symbol)] = SymbolKlines(rows["open_time"].to_numpy(dtype="int64"), values)

    @classmethod
    def from_files(cls, folder: Path | str, symbols: Sequence[str] | None = None) -> KlineStore:
        from adapters.kline_files import read_kline_dirs

        folder = Path(folder)
        if symbols is None:
            symbols = sorted(
                {p.name.split(".")[0].split("-")[0] for p in folder.glob("*.csv")}
                | {p.name.split("-")[0] for p in folder.glob("*.zip")}
            )
        if not symbols:
            raise FileNotFoundError(f"no kline files in {folder}: expected <SYMBOL>.csv or Binance Vision dumps")
        return cls(read_kline_dirs(folder, symbols))

    @classmethod
    def from_lake(
        cls, root: Path | str, symbols: Sequence[str], start_ms: int, end_ms: int, zone: str = "validated"
    ) -> KlineStore:
        from adapters import lake

        return cls(lake.read_range(root, zone, symbols, start_ms, end_ms))  # type: ignore[arg-type]

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    def get(self, symbol: str) -> SymbolKlines | None:
        return self._symbols.get(symbol)

    def first_open_time(self) -> int | None:
        starts = [int(k.open_time[0]) for k in self._symbols.values() if len(k)]
        return min(starts) if starts else None

    def window(self, symbol: str, start: int | None, end: int | None, limit: int, not_after: int) -> range:
        """Row indexes Binance's ``GET /api/v3/klines`` returns for these parameters.

        ``startTime`` given: the first ``limit`` klines with open time in ``[start, end]``; only ``endTime``:
        the last ``limit`` klines opened at or before it; neither: the latest ``limit``. Klines that open
        after ``not_after`` (the simulator's "now") do not exist yet.
        """
        klines = self._symbols[symbol]
        upper = min(end if end is not None else not_after, not_after)
        hi = int(np.searchsorted(klines.open_time, upper, side="right"))
        if start is not None:
            lo = int(np.searchsorted(klines.open_time, start, side="left"))
            return range(lo, min(hi, lo + limit)) if lo < hi else range(0)
        return range(max(0, hi - limit), hi)

    def index_of(self, symbol: str, open_time: int) -> int | None:
        klines = self._symbols.get(symbol)
        if klines is None:
            return None
        i = int(np.searchsorted(klines.open_time, open_time))
        return i if i < len(klines) and klines.open_time[i] == open_time else None

    def row(self, symbol: str, index: int) -> dict[str, Any]:
        """One kline as a dict of python values (ints for times and count, floats, None when unknown)."""
        values = self._symbols[symbol].values
        out: dict[str, Any] = {}
        for column in COLUMNS:
            value = float(values[column][index])
            if value != value:
                out[column] = None
            else:
                out[column] = int(value) if column in _INT_COLUMNS else value
        return out

    def last_price(self, symbol: str, now_ms: int) -> float | None:
        """The close of the latest kline closed at ``now_ms`` (the replay's current price)."""
        klines = self._symbols.get(symbol)
        if klines is None or not len(klines):
            return None
        i = int(np.searchsorted(klines.open_time, now_ms - HOUR_MS, side="right")) - 1
        return float(klines.values["close"][i]) if i >= 0 else None


def rest_array(row: dict[str, Any]) -> list[Any]:
    """A kline dict as the 12-field array of ``GET /api/v3/klines``."""
    out: list[Any] = []
    for column in COLUMNS:
        value = row[column]
        out.append(value if value is None or column in _INT_COLUMNS else format_number(value))
    out.append("0")
    return out


class ReplayClock:
    """The simulator's "now". Without a start it is the wall clock (every stored kline is history);
    with one it starts there and advances ``speed`` simulated hours per real second."""

    def __init__(self, start_ms: int | None = None, speed: float = 1.0, time_fn: Callable[[], float] = time.time):
        if speed <= 0:
            raise ValueError(f"replay speed must be > 0 simulated hours per second, got {speed}")
        self.start_ms = start_ms
        self.speed = speed
        self._time = time_fn
        self._t0 = time_fn()

    def restart(self) -> None:
        """Start the replay again from ``start_ms`` now (e.g. once a server is up and a client connects)."""
        self._t0 = self._time()

    def now_ms(self) -> int:
        if self.start_ms is None:
            return int(self._time() * 1000)
        return self.start_ms + int((self._time() - self._t0) * self.speed * HOUR_MS)

    def seconds_until(self, sim_ms: int) -> float:
        """Real seconds until the clock reaches ``sim_ms`` (0 if passed)."""
        ahead = sim_ms - self.now_ms()
        if ahead <= 0:
            return 0.0
        return ahead / 1000 if self.start_ms is None else ahead / (self.speed * HOUR_MS)
