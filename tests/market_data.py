"""Helpers for the market-data tests: synthetic klines the project generates itself, and a simulator
started in-process on a free port."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from models.kline import HOUR_MS, conform_frame
from simulator import KlineStore, ReplayClock, SimulatorServer


def ms(text: str) -> int:
    """``2022-03-04T05:00`` (UTC) → epoch ms."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def make_klines(
    symbol: str, start: str, hours: int, seed: int = 0, with_optional: bool = True, price: float = 100.0
) -> pd.DataFrame:
    """Plausible hourly klines (random walk, low <= open/close <= high, close_time = open_time + 3599999)."""
    rng = np.random.default_rng(seed)
    open_time = ms(start) + np.arange(hours, dtype=np.int64) * HOUR_MS
    closes = price * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
    opens = np.r_[price, closes[:-1]]
    spread = np.abs(rng.normal(0, 0.004, hours)) * closes
    volume = rng.uniform(10, 1000, hours).round(6)
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "interval": "1h",
            "open_time": open_time,
            "open": opens.round(6),
            "high": (np.maximum(opens, closes) + spread).round(6),
            "low": (np.minimum(opens, closes) - spread).round(6),
            "close": closes.round(6),
            "volume": volume,
            "close_time": open_time + HOUR_MS - 1,
        }
    )
    frame["high"] = np.maximum(frame["high"], np.maximum(frame["open"], frame["close"]))
    frame["low"] = np.minimum(frame["low"], np.minimum(frame["open"], frame["close"]))
    if with_optional:
        frame["quote_volume"] = (volume * closes).round(6)
        frame["count"] = rng.integers(100, 10_000, hours)
        frame["taker_buy_volume"] = (volume / 2).round(6)
        frame["taker_buy_quote_volume"] = (volume * closes / 2).round(6)
    return conform_frame(frame)


def make_market(symbols: Sequence[str], start: str, hours: int, with_optional: bool = True) -> pd.DataFrame:
    frames = [make_klines(s, start, hours, seed=i, with_optional=with_optional) for i, s in enumerate(symbols)]
    return conform_frame(pd.concat(frames, ignore_index=True))


@contextmanager
def running_simulator(frame: pd.DataFrame, **options: Any) -> Iterator[SimulatorServer]:
    """A simulator serving ``frame`` on a free port in a background thread (stopped on exit)."""
    clock = options.pop("clock", None) or ReplayClock()
    server = SimulatorServer(KlineStore(frame), port=0, clock=clock, **options)
    with server:
        yield server


def assert_validated_equals_files(
    root: Any, folder: Any, symbols: Sequence[str], start: int, end: int, rows: int
) -> None:
    """The validated lake under ``root`` holds exactly the kline files' rows of [start, end), ``rows`` a symbol."""
    from adapters import lake
    from adapters.kline_files import read_kline_csv

    for symbol in symbols:
        source = read_kline_csv(folder / f"{symbol}.csv", symbol)
        source = source[(source["open_time"] >= start) & (source["open_time"] < end)].reset_index(drop=True)
        stored = lake.read_range(root, "validated", [symbol], start, end)
        assert len(stored) == rows, symbol
        pd.testing.assert_frame_equal(stored, source, check_exact=True, obj=symbol)
