"""Wall time and env steps/s of a full walk-forward, and batched vs one-by-one training throughput.

    .venv/bin/python bench/walkforward.py                      # the full run (13 folds × 2 variants × 5 seeds)
    .venv/bin/python bench/walkforward.py --folds 1            # one fold: the per-task cost, projected to 13
    .venv/bin/python bench/walkforward.py --throughput-only    # only the batched-training figures

1. Training throughput, each variant with its default configuration on the 2021 klines: env steps/s with
   learning (wall and per CPU-second of this process, one torch thread) of K = 1 (one seed at a time:
   K seeds one by one take K times as long) and K = 5 seeds trained as one batched ensemble.
2. The walk-forward of issue 12: monthly test folds 2022-01 → 2023-01, 12-month sliding training
   windows, Linear-DQN and LSTM-DQN × 5 seeds with the default configuration (each fold's seeds one
   batched ensemble), baselines and statistics, on the real klines of ../shared/data/binance_spot_1h;
   ``--workers`` processes of one torch thread each (default 2: both cores), CUDA when present
   (``--device auto``). It prints the wall time, the env steps/s, each task's time and, when fewer
   folds ran, the projection to all 13 (each fold trains on 12 months: every fold costs the same).

The machine's load average is printed beside the figures; on a shared machine the wall times are not
final. A Python that recompiles every module at start-up (PYTHONDONTWRITEBYTECODE=1 and no cached
bytecode) adds tens of seconds per worker process: the start-up is printed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from adapters.kline_files import read_kline_folder
from models.settings import DEFAULT_SYMBOLS
from models.time_range import TimeRange
from pipelines.dataset import MarketDataset, build_dataset
from pipelines.train import default_configs, train_ensemble
from pipelines.walkforward.folds import add_months, iso
from pipelines.walkforward.runner import WalkForwardConfig, WalkForwardRun, run_walkforward

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance_spot_1h"
YEAR_2021 = TimeRange(1_609_459_200_000, 1_640_995_200_000, "2021-01-01:2022-01-01")
FIRST_TEST = 1_640_995_200_000  # 2022-01-01


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> str:
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {cuda}"


def throughput(
    dataset: MarketDataset, variant: str, members: int, vector_steps: int, device: str
) -> tuple[float, float]:
    """(env steps/s wall, env steps/s per CPU-second) of ``members`` seeds trained as one ensemble."""
    agent, env, train = default_configs(variant, device=device)
    learning = replace(train, learning_starts=agent.batch_size, threads=1)
    total = (vector_steps + learning.learning_starts // train.n_envs + 1) * train.n_envs
    train_ensemble(dataset, YEAR_2021, agent, env, replace(learning, total_env_steps=2 * train.n_envs), (0,))  # warm-up
    wall, cpu = time.perf_counter(), cpu_seconds()
    results = train_ensemble(
        dataset, YEAR_2021, agent, env, replace(learning, total_env_steps=total), tuple(range(members))
    )
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    steps = results[0].env_steps * members
    return steps / wall, steps / max(cpu, 1e-9)


def throughput_section(vector_steps: int, device: str) -> None:
    print("== training throughput, default configuration, 1 torch thread (env steps/s of all members)")
    dataset = build_dataset(read_kline_folder(SHARED, DEFAULT_SYMBOLS), YEAR_2021)
    for variant in ("linear", "lstm"):
        one = throughput(dataset, variant, 1, vector_steps, device)
        five = throughput(dataset, variant, 5, vector_steps, device)
        print(
            f"{variant:6s} K=1 (one by one): {one[0]:>7,.0f}/s wall [{one[1]:>7,.0f} per CPU-s] | "
            f"K=5 batched: {five[0]:>7,.0f}/s wall [{five[1]:>7,.0f} per CPU-s] | "
            f"batched/one-by-one per CPU-s x{five[1] / one[1]:.2f}",
            flush=True,
        )


def walkforward_section(args: argparse.Namespace) -> None:
    config = WalkForwardConfig(
        test_range=f"{iso(FIRST_TEST)}:{iso(add_months(FIRST_TEST, args.folds))}",
        variants=tuple(args.variants.split(",")),
        seeds=tuple(range(args.seeds)),
        steps=args.steps,
    )
    print(
        f"== walk-forward {config.test_range}: {len(config.folds())} folds x {config.variants} x "
        f"{len(config.seeds)} seeds, {'default steps' if not args.steps else f'{args.steps} steps'}, "
        f"{args.workers} workers, device {args.device}",
        flush=True,
    )
    started = time.perf_counter()
    klines = read_kline_folder(SHARED, DEFAULT_SYMBOLS)
    loaded = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="klinestream-walkforward-bench-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        run = run_walkforward(config, klines, out, args.workers, args.device)
    training = run.summary["training"]
    steps, wall = training["env_steps"], run.wall_seconds
    print(
        f"klines loaded in {loaded:.1f} s; walk-forward wall {wall:.0f} s ({wall / 60:.1f} min), "
        f"{steps:,} env steps, {steps / wall:,.0f} env steps/s overall",
        flush=True,
    )
    tasks = run_tasks(run)
    for t in tasks:
        print(
            f"  fold {t['fold']:2d} {t['variant']:6s}: {t['seconds']:7.1f} s training wall, {t['cpu']:7.1f} CPU-s, "
            f"{t['env_steps'] / t['seconds']:,.0f} env steps/s wall [{t['env_steps'] / t['cpu']:,.0f} per CPU-s]"
        )
    folds = len(config.folds())
    wall_per_fold = sum(t["seconds"] for t in tasks) / folds
    cpu_per_fold = sum(t["cpu"] for t in tasks) / folds
    other = wall - sum(t["seconds"] for t in tasks) / args.workers
    if folds < 13 or args.steps or args.seeds != 5:
        print(
            f"projection to 13 folds (same seeds and steps) on {args.workers} workers: training "
            f"{13 * wall_per_fold / args.workers / 60:.1f} min at this load, "
            f"{13 * cpu_per_fold / args.workers / 60:.1f} min with a whole core per worker (its CPU time), "
            f"+ about {other:.0f} s of start-up, evaluation and report"
        )


def run_tasks(run: WalkForwardRun) -> list[dict[str, float]]:
    """Each (fold, variant) task's training seconds and env steps, from its result.json."""
    out = []
    for path in sorted(run.work.glob("fold*/*/result.json")):
        result = json.loads(path.read_text())
        out.append(
            {
                "fold": result["fold"]["index"],
                "variant": result["variant"],
                "seconds": result["train_seconds"],
                "cpu": result["train_cpu_seconds"],
                "env_steps": result["env_steps"],
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=13, help="Monthly test folds from 2022-01 (13 = to 2023-01).")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--variants", default="linear,lstm")
    parser.add_argument("--steps", type=int, default=None, help="Env steps per member (default: the preset).")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="Keep the work folder (report included) here.")
    parser.add_argument("--throughput-steps", type=int, default=200, help="Learning steps per throughput run.")
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    if not (SHARED / "BTCUSDT.csv").exists():
        sys.exit(f"the real klines are not in {SHARED}")
    print(f"machine: {machine()}; PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    args.device = device
    if not args.skip_throughput:
        throughput_section(args.throughput_steps, device)
    if not args.throughput_only:
        walkforward_section(args)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
