"""``klinestream train`` and ``klinestream evaluate`` — the DQN agents on hourly klines.

``train`` logs its run to MLflow like the retrain DAG does (:mod:`pipelines.manual_runs`) when the tracking
server answers, and with ``--register`` makes it a challenger. Heavy imports (torch, pandas, matplotlib,
MLflow) happen inside the command bodies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from klinestream.commands.options import (
    DATA_DIR_HELP,
    RANGE_HELP,
    RANGE_METAVAR,
    Device,
    FeatureSetName,
    RewardKind,
    Variant,
    parse_range_option,
)
from models.config import DEFAULT_REWARD, EnvConfig, TrainConfig
from models.errors import ServiceError

if TYPE_CHECKING:
    from models.evaluation import EvaluationReport
    from models.settings import Settings
    from pipelines.defaults import ProjectDefaults
    from pipelines.experiments import RunSummary

#: models.feature_sets.DEFAULT_FEATURE_SET (that module imports numpy; tests check they agree)
DEFAULT_FEATURE_SET: FeatureSetName = "reference"


OPTION_HELP = (
    "Turnover: position_step (0.25 = exposures 0, 1/4 .. 1), min_hold_hours, turnover_penalty; agent: dueling, "
    "n_step, ensemble_members, ensemble_rule (mean|vote); early stopping: validation_days, validation_every, "
    "patience; any other field of the agent/env/train configs (models/options.py)."
)


def cli_options(
    texts: list[str],
    variants: Sequence[str],
    reward: str | None,
    defaults: ProjectDefaults | None = None,
    option: str = "--option",
) -> dict[str, Any]:
    """``--option NAME=VALUE`` texts parsed and checked on the configuration each variant will train: that of
    ``defaults`` (pipelines.defaults.ProjectDefaults; None = the committed file), or ``reward``'s preset
    when it asks for another (pipelines.train.checked_options); a bad one is a one-line usage error."""
    from pipelines.train import checked_options

    try:
        return checked_options(texts, variants, reward, defaults)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=option) from None


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
    variant: Variant = typer.Option(..., "--variant", help="The Q-network."),
    train_range: str = typer.Option(..., "--train", metavar=RANGE_METAVAR, help=f"Training range. {RANGE_HELP}"),
    test_range: str | None = typer.Option(
        None, "--test", metavar=RANGE_METAVAR, help=f"Test range evaluated after training. {RANGE_HELP}"
    ),
    seed: int = typer.Option(TrainConfig.seed, "--seed", help="Seed of the run."),
    device: Device | None = typer.Option(None, "--device", help="Where to train (default: KLINESTREAM_DEVICE)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default <home>/models/<variant>-seed<N>)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Environment steps in total (default: preset)."),
    fee_rate: float | None = typer.Option(
        None, "--fee-rate", min=0.0, max=0.1, help="Fee per side for training and evaluation (default: the settings')."
    ),
    slippage_bps: float | None = typer.Option(
        None, "--slippage-bps", min=0.0, help="Slippage for training and evaluation, in bps (default: the settings')."
    ),
    reward: RewardKind | None = typer.Option(
        None,
        "--reward",
        help="risk and log_return = portfolio accounting with fees and slippage (risk also subtracts the drawdown "
        "increase); reference = the paper's max(profit,0) on a sell, unit accounting, no fees (reproduces Table I "
        f"only). Default: the training defaults' (pipelines/defaults.json, KLINESTREAM_DEFAULTS_FILE), else "
        f"{DEFAULT_REWARD}; another reward trains its preset.",
    ),
    feature_set: FeatureSetName | None = typer.Option(
        None,
        "--features",
        help=f"Feature set (docs/features.md); reference = the reference system's. Default: the training "
        f"defaults', else {DEFAULT_FEATURE_SET}.",
    ),
    track: bool = typer.Option(
        True,
        "--track/--no-track",
        help="Log the run to MLflow when its server answers (KLINESTREAM_MLFLOW_TRACKING_URI).",
    ),
    register: bool = typer.Option(
        False, "--register", help="Also register the model as a new version with the challenger alias (needs --test)."
    ),
    option: list[str] = typer.Option([], "--option", help=f"NAME=VALUE agent option, repeatable. {OPTION_HELP}"),
) -> None:
    """Train a DQN agent, save its policy under --out, evaluate it on --test, and log the run to MLflow."""
    from models.settings import load_settings
    from pipelines.defaults import load_defaults

    train, test = (
        parse_range_option(train_range, "--train"),
        (parse_range_option(test_range, "--test") if test_range else None),
    )
    if register and test is None:
        raise typer.BadParameter("--register needs --test START:END (the gate compares versions on it)")
    if register and not track:
        raise typer.BadParameter("--register logs the run: drop --no-track", param_hint="--register")
    settings = load_settings()
    defaults = load_defaults(settings.defaults_file)
    options = cli_options(option, [variant], reward, defaults)
    device = device or settings.device
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise typer.BadParameter("CUDA is not available on this machine", param_hint="--device")
    tracked = _tracking_server(settings, track, register)
    klines = _klines(_data_dir(data_dir))
    out = out or settings.home / "models" / f"{variant}-seed{seed}"
    summary = _run_training(klines, variant, seed, train, test, out, device, steps,
                            settings.fee_rate if fee_rate is None else fee_rate,
                            settings.slippage_bps if slippage_bps is None else slippage_bps, reward,
                            feature_set, options, defaults)  # fmt: skip
    typer.echo(
        f"policy saved to {out / 'policy'} ({summary.env_steps_per_second:,.0f} env steps/s, "
        f"{summary.train_seconds:.1f} s)"
    )
    if summary.report is not None:
        _print_metrics(summary.report, str(test))
    if tracked:
        _track(settings, summary, out / "policy", klines, register)


def _tracking_server(settings: Settings, track: bool, register: bool) -> bool:
    """Whether to log to MLflow: asked for and its server answers. Unreachable: say so and go on, unless
    the run must be registered (then stop before training)."""
    if not track:
        return False
    from adapters.mlflow.tracking import server_unreachable

    why = server_unreachable(settings.mlflow_tracking_uri)
    if why is None:
        return True
    if register:
        raise ServiceError(f"cannot register: the MLflow tracking server {why}; start it (klinestream stack up mlflow)")
    typer.echo(f"MLflow is not reachable ({why}): this run is not tracked; the policy is still saved", err=True)
    return False


def _run_training(klines: Any, variant: str, seed: int, train: Any, test: Any, out: Path, device: str,
                  steps: int | None, fee_rate: float, slippage_bps: float, reward: str | None,
                  feature_set: str | None, options: dict[str, Any],
                  defaults: ProjectDefaults) -> RunSummary:  # fmt: skip
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.experiments import run_training

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as bars:
        task = bars.add_task(f"train {variant} seed {seed}", total=None)

        def progress(done: int, total: int, loss: float) -> None:
            bars.update(task, completed=done, total=total, description=f"train {variant} seed {seed} loss {loss:.4f}")

        return run_training(klines, variant, seed, train, test, out, device, steps, fee_rate, slippage_bps,
                            progress, reward, feature_set=feature_set, options=options,
                            defaults=defaults)  # fmt: skip


def _track(settings: Settings, summary: RunSummary, policy_dir: Path, klines: Any, register: bool) -> None:
    from pipelines.manual_runs import track_training

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the run's URL is printed below
    tracked = track_training(settings, summary, policy_dir, klines, register)
    uri = settings.mlflow_tracking_uri.rstrip("/")
    typer.echo(f"MLflow run {tracked.run_id}: {uri}/#/experiments/{tracked.experiment_id}/runs/{tracked.run_id}")
    if tracked.version is not None:
        typer.echo(f"registered {settings.mlflow_model_name} version {tracked.version} (alias challenger)")


def evaluate(
    model: Path = typer.Option(..., "--model", help="A saved policy folder (or a training --out folder)."),
    test_range: str = typer.Option(..., "--test", metavar=RANGE_METAVAR, help=f"Test range. {RANGE_HELP}"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
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
    test = parse_range_option(test_range, "--test")
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
