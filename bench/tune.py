"""Trials per hour of ``klinestream tune`` on the real klines, with one worker and with ``--workers`` (2 = both cores).

    .venv/bin/python bench/tune.py                          # 4 trials × (1 worker, 2 workers), 20,000 steps per fold
    .venv/bin/python bench/tune.py --trials 8 --steps 0     # the preset's full training length per fold

Each run is a fresh study (default space, validation months 2021-10 → 2021-12, one seed, pruning off so every
trial costs the same, no MLflow) in a temporary folder, on ../shared/data/binance_spot_1h (KLINESTREAM_DATA_DIR).
It prints the wall time, trials per hour and seconds per trial, with the machine's load average beside them: on a
shared machine the figures are not final.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from adapters.kline_files import read_kline_folder
from models.settings import DEFAULT_SYMBOLS
from pipelines.tune.config import TuneConfig
from pipelines.tune.study import prepare_study, run_trials

DATA = Path(os.environ.get("KLINESTREAM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data/binance_spot_1h"))


def one_run(workers: int, trials: int, steps: int | None, device: str) -> float:
    """Wall seconds of a fresh study of ``trials`` trials in ``workers`` processes."""
    klines = read_kline_folder(DATA, DEFAULT_SYMBOLS)
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        config = TuneConfig(steps=steps, prune=False)
        prepared = prepare_study("bench", str(home / "studies.journal"), config, frozenset(), None)
        started = time.perf_counter()
        run_trials(prepared, klines, trials, home, workers, device)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20_000, help="Env steps per fold (0 = the preset's).")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    steps = args.steps or None
    print(f"== klinestream tune: {args.trials} trials, {steps or 'preset'} env steps per fold, 3 folds, 1 seed")
    for workers in sorted({1, args.workers}):
        wall = one_run(workers, args.trials, steps, args.device)
        load = ",".join(f"{x:.1f}" for x in os.getloadavg())
        rate, per_trial = 3600 * args.trials / wall, wall / args.trials
        print(f"workers={workers} wall={wall:.0f} s trials/hour={rate:.1f} s/trial={per_trial:.0f} load={load} "
              f"cores={os.cpu_count()}")  # fmt: skip


if __name__ == "__main__":
    main()
