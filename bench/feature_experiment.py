"""Sanity experiment (evidence, not tuning): the same trainer on each feature set, inside 2021 only.

    .venv/bin/python bench/feature_experiment.py [--sets reference,extended] [--variants linear]
        [--seeds 0,1,2] [--steps 150000] [--train 2021-01-01:2021-10-01] [--test 2021-10-01:2022-01-01]

Trains with ``pipelines.experiments.run_training`` (reward "risk": portfolio accounting, 0.1% fee per
side; one torch thread) for every set × variant × seed, evaluates on ``--test`` and prints one
Markdown row per run and the mean ± std per set and variant, beside buy-and-hold and cash. The klines
are cut at the end of ``--test``, and a test range past 2022-01-01 is refused: 2022 and 2023 are the
walk-forward's test months, which no feature choice may see. The figures decide nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from adapters.kline_files import read_kline_folder
from models.time_range import parse_range
from pipelines.experiments import mean_std, run_training

WALK_FORWARD_TEST_START_MS = 1_640_995_200_000  # 2022-01-01


def _row(label: str, m: dict[str, Any], extra: str = "") -> str:
    return (
        f"| {label} | {m['total_return'] * 100:+.2f}% | {m['sharpe']:.2f} | {m['max_drawdown'] * 100:.2f}% "
        f"| {m['n_trades']} | ${m['fees']:,.0f} |{extra}"
    )


def _summary(label: str, runs: list[dict[str, Any]]) -> str:
    cells = []
    for key, scale, fmt in (("total_return", 100, "+.2f"), ("sharpe", 1, ".2f"), ("max_drawdown", 100, ".2f")):
        mean, std = mean_std([r["agent"]["portfolio_fees"][key] * scale for r in runs])
        cells.append(f"{mean:{fmt}}{'%' if scale == 100 else ''} ± {std:.2f}")
    for key in ("n_trades", "fees"):
        mean, std = mean_std([float(r["agent"]["portfolio_fees"][key]) for r in runs])
        cells.append(f"{mean:,.0f} ± {std:,.0f}")
    seconds = mean_std([r["train_seconds"] for r in runs])[0]
    return f"| {label} ({len(runs)} seeds, {runs[0]['n_features']} features) | {' | '.join(cells)} | {seconds:.0f} s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", default=os.environ.get("KLINESTREAM_DATA_DIR", "/work/shared/data/binance_spot_1h")
    )
    parser.add_argument("--sets", default="reference,extended")
    parser.add_argument("--variants", default="linear")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--train", default="2021-01-01:2021-10-01")
    parser.add_argument("--test", default="2021-10-01:2022-01-01")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    train, test = parse_range(args.train), parse_range(args.test)
    if test.end_ms > WALK_FORWARD_TEST_START_MS or train.end_ms > WALK_FORWARD_TEST_START_MS:
        parser.error("ranges must end by 2022-01-01: 2022 and 2023 are the walk-forward's test months")
    klines = read_kline_folder(args.data_dir)
    klines = klines[klines["open_time"] < test.end_ms]
    print(f"train {train}, test {test}, reward risk (0.1% fee per side), {args.steps:,} env steps, 1 thread")
    print(f"load average before: {os.getloadavg()}")
    print("| set / variant / seed | return after fees | Sharpe | max drawdown | trades | fees paid |")
    print("|---|---|---|---|---|---|")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            for name in args.sets.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    out = Path(tmp) / f"{name}-{variant}-{seed}"
                    summary = run_training(
                        klines, variant, seed, train, test, out, total_env_steps=args.steps, reward="risk",
                        threads=1, feature_set=name,
                    )  # fmt: skip
                    result = summary.to_dict()
                    runs.setdefault((name, variant), []).append(result)
                    print(_row(f"{name} / {variant} / {seed}", result["agent"]["portfolio_fees"]), flush=True)
    bh = next(iter(runs.values()))[0]["buy_and_hold"]["portfolio_fees"]
    print(f"\nload average after: {os.getloadavg()}\n")
    print("| set / variant | return after fees | Sharpe | max drawdown | trades | fees paid | train time |")
    print("|---|---|---|---|---|---|---|")
    for (name, variant), group in runs.items():
        print(_summary(f"{name} / {variant}", group))
    print(_row("buy-and-hold", bh, " |"))
    print("| cash | +0.00% | 0.00 | 0.00% | 0 | $0 | |")


if __name__ == "__main__":
    main()
