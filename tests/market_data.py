"""Helpers for the market-data tests: UTC hours as epoch ms, a simulator started in-process on a free port, and
the comparison of the validated lake with kline files. Synthetic klines come from
:func:`models.synthetic.random_walk_klines`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from simulator import KlineStore, ReplayClock, SimulatorServer


def ms(text: str) -> int:
    """``2022-03-04T05:00`` (UTC) → epoch ms."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


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
