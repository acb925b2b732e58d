"""``klinestream walkforward`` — walk-forward evaluation of the DQN variants against cash, buy-and-hold
and a trend rule, on a folder of kline files.

Heavy imports (torch, pandas, matplotlib, mlflow) happen inside the command body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from klinestream.commands.dqn import OPTION_HELP, _data_dir, _klines, cli_options
from klinestream.commands.options import DATA_DIR_HELP, RANGE_HELP, RANGE_METAVAR, Device, RewardKind, WindowKind


def _ints(value: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of integers", param_hint=option) from None


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"walk-forward {summary['config']['test_range']} ({len(summary['folds'])} folds)")
    for column in ("strategy", "return", "Sharpe [95% CI]", "max DD", "PSR", "DSR", "months > buy-and-hold"):
        table.add_column(column)
    for name, strategy in summary["strategies"].items():
        s = strategy["stitched"]
        beats = strategy.get("beats", {}).get("buy_and_hold")
        table.add_row(
            name,
            f"{s['total_return'] * 100:+.1f}%",
            f"{s['sharpe']:.2f} [{s['sharpe_ci_low']:.2f}, {s['sharpe_ci_high']:.2f}]",
            f"{s['max_drawdown'] * 100:.1f}%",
            f"{s['psr']:.2f}",
            "–" if strategy["kind"] == "baseline" else f"{s['dsr']:.2f}",
            "–" if beats is None else f"{sum(beats)}/{len(beats)}",
        )
    Console().print(table)


def walkforward(
    test_range: str = typer.Option(
        "2022-01-01:2023-02-01", "--range", metavar=RANGE_METAVAR, help=f"Test months. {RANGE_HELP}"
    ),
    train_months: int = typer.Option(12, "--train-months", min=1, help="Months of klines in each training window."),
    window: WindowKind = typer.Option("sliding", "--window", help="sliding (the last N months) or expanding."),
    embargo_hours: int | None = typer.Option(
        None, "--embargo-hours", min=1, help="Hours between training and test (default: feature window + 1 h)."
    ),
    test_months: int = typer.Option(1, "--test-months", min=1, help="Calendar months per test step."),
    variants: str = typer.Option("linear,lstm", "--variants", help="Comma-separated Q-network variants."),
    seeds: str = typer.Option("0,1,2,3,4", "--seeds", help="Comma-separated seeds (one ensemble per fold)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Env steps per member (default: the preset)."),
    fee_rate: float | None = typer.Option(None, "--fee-rate", min=0.0, max=0.1, help="Fee per side."),
    slippage_bps: float = typer.Option(0.0, "--slippage-bps", min=0.0, help="Slippage in bps."),
    extra_trials: int = typer.Option(0, "--extra-trials", min=0, help="Trials tried elsewhere (deflated Sharpe)."),
    studies: str = typer.Option(
        "",
        "--studies",
        help="`klinestream tune` studies (comma-separated) whose trials the deflated Sharpe counts.",
    ),
    tune_storage: str | None = typer.Option(None, "--tune-storage", help="Their storage (default: tune's default)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default var/walkforward/<range>)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes (one torch thread each)."),
    device: Device | None = typer.Option(None, "--device", help="Where to train (default: KLINESTREAM_DEVICE)."),
    tracking: bool = typer.Option(True, "--tracking/--no-tracking", help="Log the runs to MLflow."),
    reward: RewardKind | None = typer.Option(
        None,
        "--reward",
        help="Training reward: risk, log_return, or the paper's reference (default: the project's defaults', "
        "risk unless a study chose another).",
    ),
    option: list[str] = typer.Option([], "--option", help=f"NAME=VALUE agent option, repeatable. {OPTION_HELP}"),
    online_replay: bool = typer.Option(
        False,
        "--online-replay/--no-online-replay",
        help="Also trade each test month with the stream's trader, online learning off and on (slower).",
    ),
) -> None:
    """Walk-forward: train each variant × seed per fold, backtest the test months beside the baselines,
    write the report (and log MLflow runs)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from klinestream.online_replay import walkforward_replay
    from models.settings import load_settings
    from pipelines.defaults import load_defaults
    from pipelines.walkforward.folds import min_embargo_hours
    from pipelines.walkforward.runner import WalkForwardConfig, run_walkforward

    variant_names = tuple(v.strip() for v in variants.split(",") if v.strip())
    settings = load_settings()
    options = cli_options(option, variant_names, reward, load_defaults(settings.defaults_file))
    device = device or settings.device
    names = tuple(n.strip() for n in studies.split(",") if n.strip())
    if names:
        from pipelines.tune.study import count_trials, default_storage

        storage = tune_storage or default_storage(settings.home)
        extra_trials += sum(count_trials(storage, name) for name in names)
    config = WalkForwardConfig(
        test_range=test_range,
        train_months=train_months,
        window=window,
        embargo_hours=embargo_hours or min_embargo_hours(),
        test_months=test_months,
        variants=variant_names,
        seeds=_ints(seeds, "--seeds"),
        steps=steps,
        fee_rate=settings.fee_rate if fee_rate is None else fee_rate,
        slippage_bps=slippage_bps,
        reward=reward,
        options=options,
        extra_trials=extra_trials,
        studies=names,
        defaults_file=str(settings.defaults_file or ""),
        symbols=settings.symbols,
        traded_symbol=settings.traded_symbol,
        online_replay=online_replay,
    )
    klines = _klines(_data_dir(data_dir))
    out = out or settings.home / "walkforward" / test_range.replace(":", "_")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as bars:
        task = bars.add_task("walk-forward (fold × variant)", total=None)

        def progress(done: int, total: int, item: dict[str, Any]) -> None:
            bars.update(task, completed=done, total=total, description=f"fold {item['fold']} {item['variant']} done")

        run = run_walkforward(config, klines, out, workers, device, settings.mlflow_tracking_uri if tracking else None,
                              progress, walkforward_replay if online_replay else None)  # fmt: skip
    _print_summary(run.summary)
    typer.echo(f"report: {run.report} ({run.wall_seconds:.0f} s)")
    if run.parent_run_id:
        typer.echo(f"MLflow parent run: {run.parent_run_id}")


def register(app: typer.Typer) -> None:
    app.command("walkforward")(walkforward)
