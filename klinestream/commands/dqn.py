"""``klinestream train`` and ``klinestream evaluate`` — the DQN agents on hourly klines.

Heavy imports (torch, pandas, matplotlib) happen inside the command bodies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from models.config import REWARD_KINDS, EnvConfig, TrainConfig

if TYPE_CHECKING:
    from models.evaluation import EvaluationReport

RANGE_HELP = "UTC range START:END, end exclusive, e.g. 2021-01-01:2022-01-01."


def _range(value: str, option: str) -> Any:
    from models.time_range import RangeError, parse_range

    try:
        return parse_range(value)
    except RangeError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _data_dir(value: Path | None) -> Path:
    from models.settings import load_settings

    folder = value or load_settings().data_dir
    if folder is None:
        raise typer.BadParameter(
            "no kline folder: pass --data-dir or set KLINESTREAM_DATA_DIR", param_hint="--data-dir"
        )
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder", param_hint="--data-dir")
    return folder


def _klines(folder: Path) -> Any:
    from adapters.kline_files import read_kline_folder
    from models.settings import load_settings

    try:
        return read_kline_folder(folder, load_settings().symbols)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--data-dir") from None


def _print_metrics(report: EvaluationReport, test: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"test {test} ({report.hours} hours)")
    for column in ("accounting", "who", "profit", "return", "Sharpe", "max DD", "buys", "sells"):
        table.add_column(column)
    for (name, agent), (_, hold) in zip(report.agent.items(), report.buy_and_hold.items(), strict=True):
        for who, m in (("agent", agent), ("buy_and_hold", hold)):
            table.add_row(
                name,
                who,
                f"{m.final_profit:,.2f}",
                f"{m.total_return * 100:+.2f}%",
                f"{m.sharpe:.2f}",
                f"{m.max_drawdown * 100:.2f}%",
                str(m.n_buys),
                str(m.n_sells),
            )
    Console().print(table)


def train(
    variant: str = typer.Option(..., "--variant", help="Q-network: linear or lstm."),
    train_range: str = typer.Option(..., "--train", help=f"Training range. {RANGE_HELP}"),
    test_range: str | None = typer.Option(None, "--test", help=f"Test range evaluated after training. {RANGE_HELP}"),
    seed: int = typer.Option(TrainConfig.seed, "--seed", help="Seed of the run."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or auto (default: KLINESTREAM_DEVICE)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Folder of <SYMBOL>.csv kline files."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default var/models/<variant>-seed<N>)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Environment steps in total (default: preset)."),
    fee_rate: float | None = typer.Option(None, "--fee-rate", min=0.0, max=0.1, help="Fee per side for evaluation."),
    slippage_bps: float = typer.Option(
        EnvConfig.slippage_bps, "--slippage-bps", min=0.0, help="Slippage for evaluation, in bps."
    ),
    reward: str = typer.Option(
        EnvConfig.reward,
        "--reward",
        help=f"{' | '.join(REWARD_KINDS)}: reference = max(profit,0) on a sell, unit accounting; the others "
        "portfolio accounting with fees (log_return; risk = minus the drawdown increase).",
    ),
    feature_set: str = typer.Option(
        "reference", "--features", help="Feature set: reference (the reference system's) | indicators | extended."
    ),
) -> None:
    """Train a DQN agent, save its policy under --out, and evaluate it on --test."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from models.feature_sets import FEATURE_SETS
    from models.networks import NETWORKS
    from models.settings import load_settings
    from pipelines.experiments import run_training

    if reward not in REWARD_KINDS:
        raise typer.BadParameter(f"{reward!r} is not one of {', '.join(REWARD_KINDS)}", param_hint="--reward")
    if feature_set not in FEATURE_SETS:
        raise typer.BadParameter(f"{feature_set!r} is not one of {sorted(FEATURE_SETS)}", param_hint="--features")
    if variant not in NETWORKS:
        raise typer.BadParameter(f"{variant!r} is not one of {sorted(NETWORKS)}", param_hint="--variant")
    settings = load_settings()
    device = device or settings.device
    if device not in ("cpu", "cuda", "auto"):
        raise typer.BadParameter(f"{device!r} is not cpu, cuda or auto", param_hint="--device")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise typer.BadParameter("CUDA is not available on this machine", param_hint="--device")
    train, test = _range(train_range, "--train"), (_range(test_range, "--test") if test_range else None)
    klines = _klines(_data_dir(data_dir))
    out = out or settings.home / "models" / f"{variant}-seed{seed}"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as bars:
        task = bars.add_task(f"train {variant} seed {seed}", total=None)

        def progress(done: int, total: int, loss: float) -> None:
            bars.update(task, completed=done, total=total, description=f"train {variant} seed {seed} loss {loss:.4f}")

        summary = run_training(
            klines,
            variant,
            seed,
            train,
            test,
            out,
            device,
            steps,
            settings.fee_rate if fee_rate is None else fee_rate,
            slippage_bps,
            progress,
            reward,
            feature_set=feature_set,
        )
    typer.echo(
        f"policy saved to {out / 'policy'} ({summary.env_steps_per_second:,.0f} env steps/s, "
        f"{summary.train_seconds:.1f} s)"
    )
    if summary.report is not None:
        _print_metrics(summary.report, str(test))


def evaluate(
    model: Path = typer.Option(..., "--model", help="A saved policy folder (or a training --out folder)."),
    test_range: str = typer.Option(..., "--test", help=f"Test range. {RANGE_HELP}"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Folder of <SYMBOL>.csv kline files."),
    out: Path | None = typer.Option(None, "--out", help="Folder for metrics.json and plots (default: beside --model)."),
    fee_rate: float | None = typer.Option(None, "--fee-rate", min=0.0, max=0.1, help="Fee per side."),
    slippage_bps: float = typer.Option(EnvConfig.slippage_bps, "--slippage-bps", min=0.0, help="Slippage in bps."),
) -> None:
    """Backtest a saved policy and buy-and-hold on --test (unit and portfolio accounting)."""
    from models.features import FeatureError
    from models.policy import POLICY_FILE, Policy
    from models.settings import load_settings
    from pipelines.experiments import evaluate_and_plot

    folder = model / "policy" if (model / "policy" / POLICY_FILE).exists() else model
    if not (folder / POLICY_FILE).exists():
        raise typer.BadParameter(f"{model} holds no saved policy ({POLICY_FILE})", param_hint="--model")
    test = _range(test_range, "--test")
    klines = _klines(_data_dir(data_dir))
    settings = load_settings()
    try:
        policy = Policy.load(folder)
    except FeatureError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    out = out or folder.parent / f"eval-{test_range.replace(':', '_')}"
    report, plots = evaluate_and_plot(
        policy, klines, test, out, settings.fee_rate if fee_rate is None else fee_rate, slippage_bps
    )
    summary = {"test": str(test), **report.to_dict(), "plots": [str(p) for p in plots]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    _print_metrics(report, str(test))
    typer.echo(f"metrics and plots in {out}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
