"""The kline lake: partitioned Parquet, one file per symbol, interval and UTC day.

Layout: ``<root>/<zone>/symbol=<S>/interval=<I>/date=<YYYY-MM-DD>/part.parquet`` with zones ``raw``
(what a source delivered) and ``validated`` (what passed the expectation suite).

Writes are keyed by the data: writing the klines of ``[start, end)`` replaces exactly the rows of that
range in every partition it touches (rows outside the range are kept), through a temporary file and an
atomic rename under a per-partition lock. Rerunning a range, or an overlapping one, therefore never
duplicates a row. Reads open only the partitions of the wanted symbols and days (paths derived from the key) and
filter rows by open time with a pyarrow dataset filter.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from models.kline import COLUMNS, INTERVAL_MS, conform_frame, empty_frame

log = logging.getLogger(__name__)

Zone = Literal["raw", "validated"]
ZONES: tuple[Zone, ...] = ("raw", "validated")
DAY_MS = 86_400_000
PART_FILE = "part.parquet"
WRITE_THREADS = 4

#: Schema of a partition file (``symbol``/``interval``/``date`` live in the path, not the file).
FILE_SCHEMA = pa.schema(
    [
        ("open_time", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("close_time", pa.int64()),
        ("quote_volume", pa.float64()),
        ("count", pa.int64()),
        ("taker_buy_volume", pa.float64()),
        ("taker_buy_quote_volume", pa.float64()),
    ]
)
PARTITIONING = ds.partitioning(
    pa.schema([("symbol", pa.string()), ("interval", pa.string()), ("date", pa.string())]), flavor="hive"
)


@dataclass(frozen=True, slots=True)
class PartitionKey:
    """One partition of a zone: the klines of one symbol, interval and UTC day."""

    zone: str
    symbol: str
    interval: str
    date: str  # YYYY-MM-DD, UTC

    def path(self, root: Path) -> Path:
        return Path(root) / self.zone / f"symbol={self.symbol}" / f"interval={self.interval}" / f"date={self.date}"


def day_of(open_time_ms: int) -> str:
    """The UTC day (``YYYY-MM-DD``) holding an open time in ms."""
    return datetime.fromtimestamp(open_time_ms // 1000, tz=UTC).strftime("%Y-%m-%d")


def days_in_range(start_ms: int, end_ms: int) -> list[str]:
    """The UTC days that intersect ``[start_ms, end_ms)``."""
    if end_ms <= start_ms:
        return []
    first, last = start_ms // DAY_MS, (end_ms - 1) // DAY_MS
    return [day_of(day * DAY_MS) for day in range(first, last + 1)]


def _check_zone(zone: str) -> None:
    if zone not in ZONES:
        raise ValueError(f"unknown lake zone {zone!r}; use one of {ZONES}")


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on one partition directory (concurrent DAG runs write the same day)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _to_table(frame: pd.DataFrame) -> pa.Table:
    # no pandas metadata: a partition's bytes depend on its rows only (reruns rewrite identical files)
    return pa.Table.from_pandas(
        frame[list(COLUMNS)], schema=FILE_SCHEMA, preserve_index=False
    ).replace_schema_metadata()


def _replace_rows(directory: Path, new_rows: pa.Table, start_ms: int, end_ms: int) -> int:
    """Replace the rows of ``[start_ms, end_ms)`` in one partition file by ``new_rows``; return its row count."""
    target = directory / PART_FILE
    with _locked(directory):
        parts = []
        if target.exists():
            old = pq.read_table(target, schema=FILE_SCHEMA)
            times = old.column("open_time").to_numpy()
            keep = (times < start_ms) | (times >= end_ms)
            if not keep.all():
                old = old.filter(pa.array(keep))
            parts.append(old)
        parts.append(new_rows)
        table = pa.concat_tables([part.replace_schema_metadata() for part in parts])
        if table.num_rows == 0:
            target.unlink(missing_ok=True)
            return 0
        order = np.argsort(table.column("open_time").to_numpy(), kind="stable")
        table = table.take(pa.array(order))
        temp = directory / f".{PART_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
        pq.write_table(table, temp, compression="zstd")
        os.replace(temp, target)  # atomic on POSIX: readers see the old or the new file, never half of one
        return table.num_rows


def write_range(
    root: Path | str,
    zone: Zone,
    frame: pd.DataFrame,
    start_ms: int,
    end_ms: int,
    symbols: Sequence[str] | None = None,
    interval: str = "1h",
) -> list[PartitionKey]:
    """Make ``zone`` hold exactly ``frame``'s klines for ``[start_ms, end_ms)`` of each symbol.

    Every partition that intersects the range is rewritten atomically: its rows inside the range are
    replaced by the frame's (so an hour the source no longer has disappears), rows outside are kept.
    ``symbols`` defaults to the symbols present in ``frame``; pass it to clear a symbol whose range came
    back empty. Rows of ``frame`` outside the range are an error (they would escape the replacement).
    Returns the partitions written.
    """
    _check_zone(zone)
    frame = conform_frame(frame) if len(frame) else empty_frame()
    outside = (frame["open_time"] < start_ms) | (frame["open_time"] >= end_ms)
    if outside.any():
        raise ValueError(f"{int(outside.sum())} klines lie outside [{start_ms}, {end_ms}); refusing to write them")
    wanted = list(symbols) if symbols is not None else sorted(frame["symbol"].unique())
    jobs = []
    for symbol in wanted:
        rows = frame[(frame["symbol"] == symbol) & (frame["interval"] == interval)]
        table = _to_table(rows)
        day_index = rows["open_time"].to_numpy() // DAY_MS
        for day in range(start_ms // DAY_MS, (end_ms - 1) // DAY_MS + 1):
            key = PartitionKey(zone, symbol, interval, day_of(day * DAY_MS))
            day_rows = table.filter(pa.array(day_index == day)) if table.num_rows else table
            lo, hi = max(start_ms, day * DAY_MS), min(end_ms, (day + 1) * DAY_MS)
            jobs.append((key, day_rows, lo, hi))
    # partitions are independent files (each under its own lock); Parquet I/O releases the GIL
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        counts = list(pool.map(lambda job: _replace_rows(job[0].path(Path(root)), *job[1:]), jobs))
    for (key, *_), count in zip(jobs, counts, strict=True):
        log.debug("wrote partition zone=%s symbol=%s date=%s rows=%d", zone, key.symbol, key.date, count)
    return [key for key, *_ in jobs]


def read_range(
    root: Path | str,
    zone: Zone,
    symbols: Sequence[str],
    start_ms: int,
    end_ms: int,
    interval: str = "1h",
) -> pd.DataFrame:
    """The klines of ``symbols`` with ``start_ms <= open_time < end_ms``, sorted by (symbol, open_time).

    Only the partitions of the wanted symbols and days are opened: their paths are derived from the
    key (no listing of the zone), and pyarrow filters the rows by open time inside them.
    """
    _check_zone(zone)
    base = Path(root) / zone
    paths = [
        str(PartitionKey(zone, symbol, interval, date).path(Path(root)) / PART_FILE)
        for symbol in symbols
        for date in days_in_range(start_ms, end_ms)
    ]
    paths = [p for p in paths if os.path.exists(p)]
    if not paths:
        return empty_frame()
    dataset = ds.dataset(
        paths, format="parquet", partitioning=PARTITIONING, partition_base_dir=str(base), schema=_dataset_schema()
    )
    expression = (ds.field("open_time") >= start_ms) & (ds.field("open_time") < end_ms)
    table = dataset.to_table(filter=expression)
    if table.num_rows == 0:
        return empty_frame()
    return conform_frame(table.drop_columns(["date"]).to_pandas())


def _dataset_schema() -> pa.Schema:
    return pa.schema([*FILE_SCHEMA, ("symbol", pa.string()), ("interval", pa.string()), ("date", pa.string())])


def list_partitions(root: Path | str, zone: Zone, symbol: str, interval: str = "1h") -> list[PartitionKey]:
    """The partitions of one symbol in a zone, by date."""
    _check_zone(zone)
    base = Path(root) / zone / f"symbol={symbol}" / f"interval={interval}"
    if not base.exists():
        return []
    dates = sorted(p.name.removeprefix("date=") for p in base.glob("date=*") if (p / PART_FILE).exists())
    return [PartitionKey(zone, symbol, interval, d) for d in dates]


def hour_range(start_ms: int, end_ms: int, interval: str = "1h") -> np.ndarray:
    """The open times of every interval in ``[start_ms, end_ms)`` (start rounded up to the boundary)."""
    step = INTERVAL_MS[interval]
    first = -(-start_ms // step) * step
    return np.arange(first, end_ms, step, dtype=np.int64)
