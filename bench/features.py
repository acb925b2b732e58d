"""Cost of each feature set: the feature table of two years of klines, one stream decision, the state size.

    .venv/bin/python bench/features.py [--data-dir DIR] [--repeats 3]

For every named feature set (models/feature_sets.py) it prints, measured in the same run:

- features per state row, the linear network's flat state size and the history a state needs;
- the feature table of every hour of the klines (two years of five symbols when the real klines are
  there): best wall and CPU seconds of ``--repeats`` runs, plus fitting the normalisation on 2021
  and transforming every row;
- one stream decision's feature work: the table of the last ``history_hours + 24`` hours (what the
  online trader keeps), best of 20;
- the tails after normalisation on 2021: the largest |z| of any column on 2021 and on 2022-01..2023-01
  (a heavy-tailed column that one outlier dominates would show up here).

Data: ``--data-dir``, else ``KLINESTREAM_DATA_DIR``, else ../shared/data/binance_spot_1h beside the
repository, else synthetic klines. The machine is shared: the load average is printed beside the
figures, and CPU seconds of this process are given next to wall seconds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from adapters.kline_files import read_kline_folder
from models.feature_sets import FEATURE_SETS
from models.features import FeatureSpec, Normalizer, compute_feature_table, infer_spec
from models.kline import HOUR_MS
from models.synthetic import synthetic_klines

TRAIN_END_MS = 1_640_995_200_000  # 2022-01-01: normalisation fitted on 2021, as the reference protocol trains


def _data(data_dir: str | None) -> tuple[pd.DataFrame, str]:
    candidates = [data_dir, os.environ.get("KLINESTREAM_DATA_DIR")]
    candidates += [str(p / "shared" / "data" / "binance_spot_1h") for p in Path(__file__).resolve().parents]
    for folder in filter(None, candidates):
        if (Path(folder) / "BTCUSDT.csv").exists():
            return read_kline_folder(folder), f"real klines ({folder})"
    return synthetic_klines(2 * 24 * 365), "synthetic klines (two years)"


def _best(repeats: int, work: object) -> tuple[float, float]:
    """Best (wall, CPU) seconds of ``repeats`` calls of ``work``."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        work()  # type: ignore[operator]
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def _bench_set(klines: pd.DataFrame, name: str, repeats: int) -> None:
    train = klines["open_time"] < TRAIN_END_MS
    spec = infer_spec(klines[train] if train.any() else klines, feature_set=name)
    table_wall, table_cpu = _best(repeats, lambda: compute_feature_table(klines, spec))
    table = compute_feature_table(klines, spec)
    rows = table.open_time < TRAIN_END_MS if train.any() else np.ones(len(table), dtype=bool)
    norm_wall, _ = _best(repeats, lambda: Normalizer.fit(table, spec, rows).transform(table.values))
    z = Normalizer.fit(table, spec, rows).transform(table.values)
    latest = int(klines["open_time"].max())
    recent = klines[klines["open_time"] > latest - (spec.history_hours + 24) * HOUR_MS]
    stream_wall, stream_cpu = _best(20, lambda: compute_feature_table(recent, spec))
    per_symbol = {s: len(spec.symbol_features(s)) for s in spec.symbols}
    print(
        f"{name:<11} features/row {spec.n_features:>3} {per_symbol}  state (linear) {spec.state_size:>5}  "
        f"history {spec.history_hours} h"
    )
    print(
        f"{'':<11} table of {len(table):,} hours: {table_wall:.2f} s wall, {table_cpu:.2f} s CPU "
        f"({table.values.nbytes / 2**20:.1f} MiB float64); normalise {norm_wall:.2f} s; "
        f"stream decision ({len(recent) // len(spec.symbols)} h): {stream_wall * 1e3:.1f} ms wall, "
        f"{stream_cpu * 1e3:.1f} ms CPU"
    )
    _print_tails(spec, z, table.valid, rows)


def _print_tails(spec: FeatureSpec, z: np.ndarray, valid: np.ndarray, train: np.ndarray) -> None:
    for label, mask in (("2021", valid & train), ("after", valid & ~train)):
        if not mask.any():
            continue
        peak = np.abs(z[mask]).max(axis=0)
        worst = np.argsort(peak)[::-1][:3]
        shown = ", ".join(f"{spec.columns[i]} {peak[i]:.1f}" for i in worst)
        print(f"{'':<11} max |z| {label}: median over columns {np.median(peak):.1f}; largest: {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    klines, source = _data(args.data_dir)
    first, last = (pd.to_datetime(klines["open_time"].agg(f), unit="ms") for f in ("min", "max"))
    print(f"data: {source}, {first:%Y-%m-%d} .. {last:%Y-%m-%d}, {len(klines):,} klines")
    print(f"load average before: {os.getloadavg()}")
    for name in FEATURE_SETS:
        _bench_set(klines, name, args.repeats)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
