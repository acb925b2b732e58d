"""The klines the dashboard draws as candles: read from the kline lake, one symbol and a range of hours.

The stream's Cassandra rows hold only the close a decision saw; open, high and low come from the lake
(``adapters.lake``), which the backfill pipeline and the hourly ``klines_backfill`` DAG keep up to date.
Validated klines first; hours not validated yet are taken from the ``raw`` zone. A read opens only the
day partitions of the range (paths derived from the key), so it is bounded like the rows it goes with.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from adapters.lake import read_range
from models.kline import HOUR_MS


class LakeKlines:
    """Klines of the lake under ``root`` (``settings.lake_root``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, symbol: str, start: int, end: int) -> pd.DataFrame:
        """The klines of ``symbol`` with ``start <= open_time < end``: validated, else raw, by hour."""
        validated = read_range(self.root, "validated", [symbol], start, end)
        if len(validated) >= (end - start) // HOUR_MS:
            return validated
        raw = read_range(self.root, "raw", [symbol], start, end)
        missing = raw[~raw["open_time"].isin(validated["open_time"])]
        if missing.empty:
            return validated
        return pd.concat([validated, missing], ignore_index=True).sort_values("open_time", ignore_index=True)
