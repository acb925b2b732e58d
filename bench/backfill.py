"""Backfill and validation throughput (rows/s) for the reference range, from the simulator and from files.

    .venv/bin/python bench/backfill.py [--data-dir ../shared/data/binance_spot_1h] [--start 2021-01-01 --end 2023-02-01]

Prints one line per stage. Runs in a temporary lake; the machine's load is printed with the figures,
because the numbers mean little without it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SYMBOLS = ["BNBUSDT", "BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT"]


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def _timed(label: str, rows_of: Callable[[Any], int], func: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - started
    rows = rows_of(result)
    print(f"{label:<44} {rows:>8} rows {seconds:8.2f} s {rows / seconds:>10,.0f} rows/s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "binance_spot_1h")
    parser.add_argument("--start", default="2021-01-01")
    parser.add_argument("--end", default="2023-02-01")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from adapters import lake
    from pipelines.backfill import KlineSource, ingest_raw, publish
    from pipelines.validation import KlineValidator
    from simulator import KlineStore, SimulatorServer

    start, end = _ms(args.start), _ms(args.end)
    print(f"backfill bench: {len(SYMBOLS)} symbols, [{args.start}, {args.end}), data {args.data_dir}")
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs")
    validator = _timed("GX context + suite (once)", lambda _: 1, KlineValidator)
    store = _timed("simulator: load kline files", lambda s: sum(len(s.get(x)) for x in s.symbols),
                   lambda: KlineStore.from_files(args.data_dir, SYMBOLS))  # fmt: skip
    total = lambda fetched: sum(fetched.values())  # noqa: E731
    validated = lambda results: sum(r.rows for r in results)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer(store, port=0) as server:
        root = Path(tmp) / "sim"
        source = KlineSource("simulator", server.base_url)
        _timed("simulator → python-binance → raw lake", total, lambda: ingest_raw(root, source, SYMBOLS, start, end))
        _timed("validate (GX) + publish → validated", validated,
               lambda: publish(root, SYMBOLS, start, end, validator))  # fmt: skip
        _timed("read validated range (pyarrow, pruned)", len,
               lambda: lake.read_range(root, "validated", SYMBOLS, start, end))  # fmt: skip
        frames = {s: lake.read_range(root, "raw", [s], start, end) for s in SYMBOLS}
        _timed("validate only (GX, 5 symbol-range batches)", lambda rs: sum(r.rows for r in rs),
               lambda: [validator.validate(frames[s], s, start, end) for s in SYMBOLS])  # fmt: skip
        files_root = Path(tmp) / "files"
        files = KlineSource("files", path=args.data_dir)
        _timed("files → raw lake", total, lambda: ingest_raw(files_root, files, SYMBOLS, start, end))
        _timed("validate (GX) + publish → validated", validated,
               lambda: publish(files_root, SYMBOLS, start, end, validator))  # fmt: skip
        _timed("rerun files → raw lake (replace partitions)", total,
               lambda: ingest_raw(files_root, files, SYMBOLS, start, end))  # fmt: skip
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
