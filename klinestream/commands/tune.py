"""``klinestream tune`` — an Optuna study over the DQN configuration, scored by a purged walk-forward on
validation months inside the training period (never the walk-forward's test months); docs/tuning.md.

Heavy imports (optuna, torch, pandas, mlflow) happen inside the command body.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from klinestream.commands.dqn import _data_dir, _klines
from klinestream.commands.options import (
    DATA_DIR_HELP,
    RANGE_HELP,
    RANGE_METAVAR,
    Device,
    TuneAggregate,
    Variant,
    json_option,
    parse_range_option,
    print_json,
)
from klinestream.commands.walkforward import _ints


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items())
    console.print(f"study {summary['study']} ({summary['storage']}): {counts}")
    best = summary["best"]
    if best is None:
        console.print("no complete trial yet")
        return
    table = Table(title=f"best trial {best['trial']}: objective {best['objective']:.3f}")
    for column in ("param", "value", "importance"):
        table.add_column(column)
    for name, value in best["params"].items():
        importance = summary["importance"].get(name)
        table.add_row(name, str(value), "" if importance is None else f"{importance:.2f}")
    console.print(table)
    folds = Table(title="its validation months (mean over seeds, after fees)")
    for column in ("month", "Sharpe", "return", "trades", "penalty", "score", "buy-and-hold Sharpe"):
        folds.add_column(column)
    for f in best["folds"]:
        folds.add_row(f["month"], f"{f['sharpe']:.2f}", f"{f['total_return'] * 100:+.1f}%", f"{f['n_trades']:.0f}",
                      f"{f['penalty']:.2f}", f"{f['score']:.2f}", f"{f['buy_and_hold_sharpe']:.2f}")  # fmt: skip
    console.print(folds)


def tune(
    variant: Variant | None = typer.Option(None, "--variant", help="The Q-network (default: linear)."),
    study_name: str | None = typer.Option(None, "--study-name", help="Study to create or resume (default: variant)."),
    trials: int = typer.Option(20, "--trials", min=0, help="Finished trials the study should have (resumes add)."),
    storage: str | None = typer.Option(
        None, "--storage", help="Journal file or database URL (default $KLINESTREAM_HOME/tune/studies.journal)."
    ),
    space: str | None = typer.Option(None, "--space", help="Space: a name in pipelines/tune/spaces, or a file."),
    tune_range: str | None = typer.Option(
        None,
        "--range",
        metavar=RANGE_METAVAR,
        help=f"Klines the objective may read (default 2021-01-01:2022-01-01). {RANGE_HELP}",
    ),
    folds: int | None = typer.Option(None, "--folds", min=1, help="Validation months at the end of --range (3)."),
    train_months: int | None = typer.Option(None, "--train-months", min=1, help="Training months per fold (6)."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma-separated seeds per fold (0)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Env steps per member and fold (default: preset)."),
    fee_rate: float | None = typer.Option(None, "--fee-rate", min=0.0, max=0.1, help="Fee per side (0.001)."),
    trade_budget: float | None = typer.Option(None, "--trade-budget", min=1.0, help="Trades per 30 days (60)."),
    aggregate: TuneAggregate | None = typer.Option(None, "--aggregate", help="How fold scores combine (mean)."),
    sampler_seed: int | None = typer.Option(None, "--sampler-seed", help="Seed of the TPE sampler (0)."),
    prune: bool | None = typer.Option(None, "--prune/--no-prune", help="Median pruner after each fold (on)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes (one torch thread each)."),
    device: Device | None = typer.Option(None, "--device", help="Where to train (default: KLINESTREAM_DEVICE)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    tracking: bool = typer.Option(True, "--tracking/--no-tracking", help="Log the study and trials to MLflow."),
    experiment: str = typer.Option("klinestream-tune", "--experiment", help="MLflow experiment of the study."),
    write_defaults: bool = typer.Option(
        False, "--write-defaults", help="Write the best trial's configuration as the variant's training defaults."
    ),
    defaults_file: Path | None = typer.Option(
        None, "--defaults-file", help="Defaults file to write (default KLINESTREAM_DEFAULTS_FILE, else the committed)."
    ),
    as_json: bool = json_option(),
) -> None:
    """Run (or resume) a hyperparameter study; print its best configuration; --write-defaults makes it the
    variant's training defaults, with its provenance."""
    from models.settings import load_settings
    from pipelines.tune.config import TuneConfig

    if tune_range is not None:
        parse_range_option(tune_range, "--range")
    settings = load_settings()
    device = device or settings.device
    options: dict[str, Any] = {
        "variant": variant, "tune_range": tune_range, "folds": folds, "train_months": train_months,
        "seeds": _ints(seeds, "--seeds") if seeds is not None else None, "steps": steps, "fee_rate": fee_rate,
        "trade_budget": trade_budget, "aggregate": aggregate, "sampler_seed": sampler_seed, "prune": prune,
    }  # fmt: skip
    given = {k: v for k, v in options.items() if v is not None}
    requested = TuneConfig(symbols=settings.symbols, traded_symbol=settings.traded_symbol, **given)
    from pipelines.defaults import write_defaults as write
    from pipelines.tune.study import best_defaults, default_storage, prepare_study, run_trials, summarize

    name = study_name or variant or TuneConfig.variant
    storage = storage or default_storage(settings.home)
    prepared = prepare_study(name, storage, requested, frozenset(given), space)
    klines = _klines(_data_dir(data_dir))
    uri = settings.mlflow_tracking_uri if tracking else None

    def progress(done: int, total: int, outcome: dict[str, Any]) -> None:
        value = "–" if outcome["value"] is None else f"{outcome['value']:.3f}"
        seconds = outcome["seconds"]
        typer.echo(f"trial {outcome['number']} {outcome['state']} {value} ({seconds:.0f} s) [{done}/{total}]",
                   err=as_json)  # fmt: skip

    outcome = run_trials(prepared, klines, trials, settings.home, workers, device, uri, experiment, progress)
    summary = summarize(storage, name)
    summary["wall_seconds"] = round(outcome.wall_seconds, 1)
    summary["ran"] = len(outcome.ran)
    out = settings.home / "tune" / f"{name}.summary.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    if uri and outcome.parent_run_id:
        from pipelines.tune.tracking import log_summary

        log_summary(uri, outcome.parent_run_id, summary)
    lines = [f"{len(outcome.ran)} trial(s) in {outcome.wall_seconds:.0f} s; summary: {out}"]
    if outcome.parent_run_id:
        lines.append(f"MLflow parent run: {outcome.parent_run_id}")
    if write_defaults:
        chosen = best_defaults(storage, name)
        written = write(defaults_file or settings.defaults_file, prepared.config.variant, chosen)
        summary["defaults_written"] = str(written.path)
        lines.append(f"defaults of {prepared.config.variant} written to {written.path} (study {name}, trial "
                     f"{chosen.provenance['trial']})")  # fmt: skip
        if prepared.config.steps:
            lines.append(f"note: the study trained {prepared.config.steps:,} env steps per fold; the defaults train "
                         "with the preset's length: confirm them with klinestream walkforward --studies")  # fmt: skip
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    for line in lines:
        typer.echo(line, err=as_json)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
