"""Reading kline files: header CSVs (such as ../shared/data/binance_spot_1h) and Binance Vision dumps.

- **Header CSVs** name their columns in the first line; the four optional columns (and ``close_time``)
  may be empty, and stay empty (NaN / <NA>): nothing is invented.
- **Binance Vision monthly dumps** (``BTCUSDT-1h-2024-01.csv`` or ``.zip`` holding that CSV) have no
  header and Binance's 12 REST fields. Dumps from 2025 on write MICROSECOND timestamps; they are
  converted to milliseconds, the contract's unit.

:func:`read_kline_dir` finds the files of one symbol in a folder, whatever their kind, and returns the
klines of a range as one contract frame.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from models.errors import KlineParseError
from models.kline import COLUMNS, conform_frame, empty_frame

log = logging.getLogger(__name__)

#: Open times above this are microseconds (ms epochs stay below it until the year 5138).
MICROSECOND_THRESHOLD = 100_000_000_000_000
VISION_COLUMNS: tuple[str, ...] = (*COLUMNS, "ignore")
_VISION_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+)-(?P<interval>\w+)-(?P<year>\d{4})-(?P<month>\d{2})(-\d{2})?$")


def read_kline_csv(path: Path | str, symbol: str | None = None, interval: str = "1h") -> pd.DataFrame:
    """Read one header CSV of klines; the symbol defaults to the file's stem (``BTCUSDT.csv``).

    Empty optional columns stay empty (NaN / <NA>); nothing is invented.
    """
    path = Path(path)
    frame = pd.read_csv(path, dtype={"open_time": "int64"})
    missing = [c for c in COLUMNS[:6] if c not in frame.columns]
    if missing:
        raise KlineParseError(f"{path}: missing columns {missing}; a header CSV needs at least {list(COLUMNS[:6])}")
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


def _vision_frame(handle: io.BytesIO | Path, source: str) -> pd.DataFrame:
    frame = pd.read_csv(handle, header=None, names=list(VISION_COLUMNS), dtype={"open_time": "int64"})
    if frame["close_time"].isna().any() or not pd.api.types.is_integer_dtype(frame["close_time"]):
        raise KlineParseError(f"{source}: not a Binance Vision kline dump (close_time is not an integer column)")
    if len(frame) and frame["open_time"].iloc[0] > MICROSECOND_THRESHOLD:
        frame["open_time"] //= 1000
        frame["close_time"] //= 1000
    return frame.drop(columns=["ignore"])


def read_vision_dump(path: Path | str, symbol: str | None = None, interval: str | None = None) -> pd.DataFrame:
    """Read one Binance Vision kline dump (CSV, or ZIP holding one CSV) without a header.

    Microsecond timestamps (dumps from 2025 on) become milliseconds. Symbol and interval default to the
    file name (``BTCUSDT-1h-2024-01.zip``).
    """
    path = Path(path)
    name = _VISION_NAME.match(path.name.split(".")[0])
    symbol = symbol or (name.group("symbol") if name else None)
    interval = interval or (name.group("interval") if name else "1h")
    if symbol is None:
        raise KlineParseError(f"{path}: cannot tell the symbol from the file name; pass symbol=")
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.endswith(".csv")]
            if len(members) != 1:
                raise KlineParseError(f"{path}: expected one CSV in the archive, found {members}")
            with archive.open(members[0]) as member:
                frame = _vision_frame(io.BytesIO(member.read()), str(path))
    else:
        frame = _vision_frame(path, str(path))
    frame["symbol"] = symbol.upper()
    frame["interval"] = interval
    return conform_frame(frame)


def has_header(path: Path) -> bool:
    """Whether a kline CSV starts with a header line (its first field is not a number)."""
    if path.suffix == ".zip":
        return False
    with open(path) as handle:
        first = handle.readline().split(",")[0].strip()
    return not first.isdigit()


def kline_files(folder: Path | str, symbol: str, interval: str = "1h") -> list[Path]:
    """The kline files of one symbol in a folder: ``<S>.csv``, ``<S>-<I>-YYYY-MM[.csv|.zip]``."""
    folder = Path(folder)
    found = [folder / f"{symbol}.csv"] if (folder / f"{symbol}.csv").exists() else []
    for pattern in (f"{symbol}-{interval}-*.csv", f"{symbol}-{interval}-*.zip"):
        found.extend(sorted(folder.glob(pattern)))
    return found


def read_kline_dir(
    folder: Path | str, symbol: str, start_ms: int | None = None, end_ms: int | None = None, interval: str = "1h"
) -> pd.DataFrame:
    """The klines of one symbol with ``start_ms <= open_time < end_ms`` from every file of it in a folder."""
    paths = kline_files(folder, symbol, interval)
    if not paths:
        raise FileNotFoundError(
            f"no kline files for {symbol} in {folder}: expected {symbol}.csv or {symbol}-{interval}-YYYY-MM.zip"
        )
    frames = []
    for path in paths:
        if _month_outside(path, start_ms, end_ms):
            continue
        if has_header(path):
            frames.append(read_kline_csv(path, symbol, interval))
        else:
            frames.append(read_vision_dump(path, symbol, interval))
    frame = conform_frame(pd.concat(frames, ignore_index=True)) if frames else empty_frame()
    if start_ms is not None:
        frame = frame[frame["open_time"] >= start_ms]
    if end_ms is not None:
        frame = frame[frame["open_time"] < end_ms]
    return frame.reset_index(drop=True)


def _month_outside(path: Path, start_ms: int | None, end_ms: int | None) -> bool:
    """Whether a monthly dump's month lies wholly outside the range (so it need not be read)."""
    name = _VISION_NAME.match(path.name.split(".")[0])
    if name is None:
        return False
    month = pd.Timestamp(year=int(name.group("year")), month=int(name.group("month")), day=1, tz="UTC")
    first = int(month.timestamp() * 1000)
    after = int((month + pd.offsets.MonthBegin(1)).timestamp() * 1000)
    return (end_ms is not None and first >= end_ms) or (start_ms is not None and after <= start_ms)


def read_kline_dirs(
    folder: Path | str, symbols: Sequence[str], start_ms: int | None = None, end_ms: int | None = None
) -> pd.DataFrame:
    """:func:`read_kline_dir` for several symbols, as one frame sorted by (symbol, open_time)."""
    frames = [read_kline_dir(folder, s, start_ms, end_ms) for s in symbols]
    return conform_frame(pd.concat(frames, ignore_index=True)) if frames else empty_frame()
