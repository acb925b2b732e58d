"""Reading kline files: CSVs with a header such as ../shared/data/binance_spot_1h.

(Binance Vision dumps — CSV or ZIP without a header — are added by the market-data work.)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.kline import COLUMNS, conform_frame


def read_kline_csv(path: Path | str, symbol: str | None = None, interval: str = "1h") -> pd.DataFrame:
    """Read one header CSV of klines; the symbol defaults to the file's stem (``BTCUSDT.csv``).

    Empty optional columns stay empty (NaN / <NA>); nothing is invented.
    """
    path = Path(path)
    frame = pd.read_csv(path, dtype={"open_time": "int64"})
    missing = [c for c in COLUMNS[:6] if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    frame["symbol"] = (symbol or path.stem.split("-")[0]).upper()
    frame["interval"] = interval
    return conform_frame(frame)


def read_kline_folder(folder: Path | str, symbols: tuple[str, ...] | list[str], interval: str = "1h") -> pd.DataFrame:
    """Read ``<folder>/<SYMBOL>.csv`` for each symbol into one frame sorted by (symbol, open_time)."""
    folder = Path(folder)
    frames = []
    for symbol in symbols:
        path = folder / f"{symbol}.csv"
        if not path.exists():
            raise FileNotFoundError(f"no kline file for {symbol}: {path}")
        frames.append(read_kline_csv(path, symbol, interval))
    return conform_frame(pd.concat(frames, ignore_index=True))
