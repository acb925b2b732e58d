"""The trader's rolling kline history: the last hours of every context symbol, keyed like the contract.

Duplicates (Kafka's at-least-once delivery, Spark's replay) are dropped: the first kline of a key is
kept, so an hour that was decided never changes under it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from models.kline import COLUMNS, HOUR_MS, Kline

_INT_COLUMNS = ("open_time", "close_time", "count")


class History:
    """Klines by ``(symbol, open_time)``."""

    def __init__(self) -> None:
        self._klines: dict[tuple[str, int], Kline] = {}

    def __len__(self) -> int:
        return len(self._klines)

    def copy(self) -> History:
        """An independent history holding the same klines (klines are immutable: shared, not copied)."""
        other = History()
        other._klines = dict(self._klines)
        return other

    def add(self, klines: Iterable[Kline]) -> int:
        """Add new klines; returns how many were new."""
        added = 0
        for kline in klines:
            key = (kline.symbol, kline.open_time)
            if key not in self._klines:
                self._klines[key] = kline
                added += 1
        return added

    def klines(self, symbols: Iterable[str]) -> list[Kline]:
        wanted = set(symbols)
        return [k for (symbol, _), k in self._klines.items() if symbol in wanted]

    def symbols_by_hour(self, after: int | None) -> dict[int, set[str]]:
        """The symbols present at every hour later than ``after`` (all hours when None)."""
        out: dict[int, set[str]] = {}
        for symbol, hour in self._klines:
            if after is None or hour > after:
                out.setdefault(hour, set()).add(symbol)
        return out

    def symbols_at(self, hour: int) -> set[str]:
        return {symbol for symbol, open_time in self._klines if open_time == hour}

    def hours_after(self, hour: int | None) -> list[int]:
        return sorted(self.symbols_by_hour(hour))

    def close(self, symbol: str, hour: int) -> float | None:
        kline = self._klines.get((symbol, hour))
        return None if kline is None else kline.close

    def trim(self, last_hour: int | None, keep_hours: int) -> None:
        """Forget klines more than ``keep_hours`` before ``last_hour``."""
        if last_hour is None:
            return
        oldest = last_hour - keep_hours * HOUR_MS
        self._klines = {key: k for key, k in self._klines.items() if key[1] >= oldest}

    def to_state(self) -> dict[str, object]:
        """Plain lists and one float64 tensor (NaN = missing optional value) for the checkpoint."""
        klines = sorted(self._klines.values(), key=lambda k: (k.symbol, k.open_time))
        values = [[math.nan if getattr(k, c) is None else float(getattr(k, c)) for c in COLUMNS] for k in klines]
        tensor = torch.tensor(values, dtype=torch.float64).reshape(len(klines), len(COLUMNS))
        return {"symbol": [k.symbol for k in klines], "interval": [k.interval for k in klines], "values": tensor}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> History:
        history = cls()
        symbols, intervals, values = state["symbol"], state["interval"], state["values"]
        assert isinstance(symbols, list) and isinstance(intervals, list) and isinstance(values, torch.Tensor)
        for symbol, interval, row in zip(symbols, intervals, values.tolist(), strict=True):
            fields: dict[str, object] = {}
            for name, value in zip(COLUMNS, row, strict=True):
                if math.isnan(value):
                    fields[name] = None
                else:
                    fields[name] = int(value) if name in _INT_COLUMNS else value
            history.add([Kline(symbol=symbol, interval=interval, **fields)])  # type: ignore[arg-type]
        return history
