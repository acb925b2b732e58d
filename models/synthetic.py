"""Synthetic hourly klines with a known, learnable pattern (for tests and demos; never for results).

The traded symbol follows a sine wave of ``period`` hours around a slowly falling level (so
buy-and-hold loses a little while buying the troughs and selling the crests wins); the other context
symbols are seeded random walks. Output is a contract-form frame (models/kline.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.kline import HOUR_MS, conform_frame
from models.settings import DEFAULT_SYMBOLS

START_MS = 1_609_459_200_000  # 2021-01-01 00:00 UTC


def synthetic_klines(
    hours: int,
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS,
    traded_symbol: str = "BTCUSDT",
    period: int = 24,
    amplitude: float = 0.04,
    drift_per_hour: float = -0.0002,
    noise: float = 0.002,
    seed: int = 0,
    start_ms: int = START_MS,
    missing_hours: tuple[int, ...] = (),
    with_optional: bool = True,
) -> pd.DataFrame:
    """``hours`` hourly klines per symbol; ``missing_hours`` (indices) are left out for every symbol."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    frames = []
    for k, symbol in enumerate(symbols):
        if symbol == traded_symbol:
            log_price = np.log(20_000.0) + amplitude * np.sin(2 * np.pi * t / period) + drift_per_hour * t
            log_price += rng.normal(0.0, noise, hours)
        else:
            log_price = np.log(10.0 * (k + 1)) + np.cumsum(rng.normal(0.0, 0.01, hours))
        close = np.exp(log_price)
        open_ = np.concatenate([[close[0]], close[:-1]])
        spread = np.abs(rng.normal(0.0, 0.002, hours))
        volume = rng.lognormal(3.0, 0.3, hours)
        frame = pd.DataFrame(
            {
                "symbol": symbol,
                "interval": "1h",
                "open_time": start_ms + t * HOUR_MS,
                "open": open_,
                "high": np.maximum(open_, close) * (1 + spread),
                "low": np.minimum(open_, close) * (1 - spread),
                "close": close,
                "volume": volume,
                "close_time": start_ms + t * HOUR_MS + HOUR_MS - 1,
            }
        )
        if with_optional:
            frame["count"] = rng.integers(100, 1000, hours)
            frame["taker_buy_volume"] = volume * rng.uniform(0.3, 0.7, hours)
        frames.append(frame.drop(index=list(missing_hours)))
    return conform_frame(pd.concat(frames, ignore_index=True))


def random_walk_klines(
    symbols: tuple[str, ...] | list[str],
    start_ms: int,
    hours: int,
    seed: int = 0,
    drift: float = 0.0,
    vol: float = 0.01,
    price: float | None = None,
    with_optional: bool = True,
) -> pd.DataFrame:
    """Plausible hourly klines with no pattern: one geometric random walk per symbol (``drift`` and ``vol`` per
    hour), starting at ``price`` (default 100 × the symbol's position + 1), prices and volumes rounded to 6
    decimals so a CSV round trip is exact; low ≤ open, close ≤ high; ``close_time = open_time + 3,599,999``.

    Symbol ``i`` draws from its own generator (``seed``, ``i``), so adding a symbol leaves the others' klines
    unchanged. The one random-walk generator of the test suite (the sine-wave :func:`synthetic_klines` is for
    tests where something must be learnable)."""
    open_time = start_ms + np.arange(hours, dtype=np.int64) * HOUR_MS
    frames = []
    for index, symbol in enumerate(symbols):
        rng = np.random.default_rng((seed, index))
        start = price if price is not None else 100.0 * (index + 1)
        close = start * np.exp(np.cumsum(rng.normal(drift, vol, hours)))
        open_ = np.r_[start, close[:-1]]
        spread = np.abs(rng.normal(0.0, 0.004, hours)) * close
        volume = rng.uniform(10, 1000, hours).round(6)
        frame = pd.DataFrame(
            {
                "symbol": symbol,
                "interval": "1h",
                "open_time": open_time,
                "open": open_.round(6),
                "high": (np.maximum(open_, close) + spread).round(6),
                "low": (np.minimum(open_, close) - spread).round(6),
                "close": close.round(6),
                "volume": volume,
                "close_time": open_time + HOUR_MS - 1,
            }
        )
        frame["high"] = np.maximum(frame["high"], np.maximum(frame["open"], frame["close"]))
        frame["low"] = np.minimum(frame["low"], np.minimum(frame["open"], frame["close"]))
        if with_optional:
            frame["quote_volume"] = (volume * close).round(6)
            frame["count"] = rng.integers(100, 10_000, hours)
            frame["taker_buy_volume"] = (volume * rng.uniform(0.3, 0.7, hours)).round(6)
            frame["taker_buy_quote_volume"] = (frame["taker_buy_volume"] * close).round(6)
        frames.append(frame)
    return conform_frame(pd.concat(frames, ignore_index=True))
