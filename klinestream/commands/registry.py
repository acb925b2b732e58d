"""``klinestream promote`` and ``klinestream models``: the champion/challenger aliases of the MLflow registry.

- ``promote --model N``: make version N the champion (the old one becomes ``previous``);
- ``promote --rollback``: put the ``previous`` champion back;
- ``promote --auto``: run the gate on the ``challenger`` against the ``champion`` on a holdout read from
  the validated kline lake (``--test``; default: the challenger's own test range);
- ``models``: the versions with their variant, aliases and gate decisions (``--json`` for scripts).

Setting ``champion`` in the MLflow UI does the same as ``promote --model``: the platform reads aliases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from klinestream.commands.options import RANGE_HELP, RANGE_METAVAR, json_option, parse_range_option, print_json, renamed
from pipelines.retrain_config import GateConfig

if TYPE_CHECKING:
    from models.settings import Settings
    from pipelines.promotion import GateDecision

AUTO_HELP = "Gate the challenger against the champion on the holdout; promote only when it wins."


def promote(
    model: int | None = typer.Option(None, "--model", min=1, metavar="VERSION", help="Make this version the champion."),
    rollback: bool = typer.Option(False, "--rollback", help="Put the previous champion back."),
    auto: bool = typer.Option(False, "--auto", help=AUTO_HELP),
    test_range: str | None = typer.Option(
        None,
        "--test",
        metavar=RANGE_METAVAR,
        help=f"Holdout for --auto (default: the challenger's test_range tag). {RANGE_HELP}",
    ),
    sharpe_margin: float = typer.Option(
        GateConfig.sharpe_margin, help="--auto: Sharpe after fees the challenger must add."
    ),
    max_drawdown: float = typer.Option(
        GateConfig.max_drawdown, help="--auto: largest max drawdown allowed (fraction)."
    ),
    min_trades: int = typer.Option(GateConfig.min_trades, help="--auto: fewest trades on the holdout."),
    old_version: int | None = typer.Option(None, "--version", min=1, hidden=True, help="Deprecated: --model."),
    old_test_range: str | None = typer.Option(None, "--test-range", hidden=True, help="Deprecated: --test."),
    baseline: str = typer.Option(
        GateConfig.baseline, help="--auto: baseline to beat after fees: cash, buy_and_hold or trend."
    ),
) -> None:
    """Move the champion alias of the registered model: to a version, back (rollback), or by the gate."""
    from adapters.mlflow import aliases
    from adapters.mlflow.registry import CHALLENGER, RegistryError, alias_version, registry_client
    from models.settings import load_settings

    version = renamed(model, old_version, "--version", "--model")
    test_range = renamed(test_range, old_test_range, "--test-range", "--test")
    if sum([version is not None, rollback, auto]) != 1:
        raise typer.BadParameter("give exactly one of --model VERSION, --rollback, --auto")
    settings = load_settings()
    uri, name = settings.mlflow_tracking_uri, settings.mlflow_model_name
    client = registry_client(uri)
    if version is not None:
        client.get_model_version(name, str(version))  # fails with MLflow's message when it does not exist
        old = aliases.promote(client, name, version, how="manual", tracking_uri=uri)
        typer.echo(f"{name}: champion = version {version}" + (f" (previous = {old})" if old else ""))
    elif rollback:
        champion = aliases.rollback(client, name, uri)
        typer.echo(f"{name}: rolled back, champion = version {champion}")
    else:
        challenger = alias_version(uri, name, CHALLENGER)
        if challenger is None:
            raise RegistryError(f"model {name!r} has no challenger: run the dqn_retrain DAG first")
        config = GateConfig(sharpe_margin=sharpe_margin, max_drawdown=max_drawdown, min_trades=min_trades,
                            baseline=baseline)  # fmt: skip
        decision = _auto(settings, challenger, test_range, config)
        typer.echo(f"{name}: version {challenger} {decision.summary}")


def _auto(settings: Settings, challenger: int, test_range: str | None, config: GateConfig) -> GateDecision:
    from adapters.alerting import build_alert_sink
    from adapters.mlflow.registry import registry_client
    from models.kline import HOUR_MS
    from pipelines import promotion
    from pipelines.retrain import HISTORY_PAD_HOURS, read_validated_klines
    from pipelines.walkforward.backtests import DEFAULT_TREND_HOURS

    uri, name = settings.mlflow_tracking_uri, settings.mlflow_model_name
    client = registry_client(uri)
    version = client.get_model_version(name, str(challenger))
    text = test_range or version.tags.get("test_range")
    if not text and version.run_id:  # the training run's tag
        text = client.get_run(version.run_id).data.tags.get("test_range")
    if not text:
        raise typer.BadParameter("the challenger has no test_range tag: pass --test START:END")
    holdout = parse_range_option(text, "--test")
    history = HISTORY_PAD_HOURS + DEFAULT_TREND_HOURS  # the trend baseline's moving average needs a week more
    klines = read_validated_klines(settings, holdout.start_ms - history * HOUR_MS, holdout.end_ms)
    alerts = build_alert_sink(settings)
    try:
        return promotion.gate_version(uri, name, challenger, klines, holdout, config, settings.fee_rate, alerts)
    finally:
        alerts.close()


def model_versions(client: Any, name: str) -> list[dict[str, Any]]:
    """Each version of ``name``, oldest first: its variant, aliases, gate decision and what trained it."""
    aliases: dict[str, list[str]] = {}
    for alias, number in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    rows = []
    for item in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        tags = item.tags
        rows.append(
            {
                "version": int(item.version),
                "variant": tags.get("variant"),
                "aliases": sorted(aliases.get(str(item.version), [])),
                "gate_decision": tags.get("gate.decision"),
                "gate_reason": tags.get("gate.reason"),
                "promoted_by": tags.get("gate.promoted_by"),
                "seed": tags.get("seed"),
                "train_range": tags.get("train_range"),
                "test_range": tags.get("test_range"),
                "run_id": item.run_id,
            }
        )
    return rows


def models(as_json: bool = json_option()) -> None:
    """List the registered versions: variant, aliases, gate decision, who made it champion, ranges."""
    from adapters.mlflow.registry import registry_client
    from models.settings import load_settings

    settings = load_settings()
    name = settings.mlflow_model_name
    rows = model_versions(registry_client(settings.mlflow_tracking_uri), name)
    if as_json:
        print_json({"model": name, "versions": rows})
        return
    for row in rows:
        typer.echo(
            f"v{row['version']:<4} {row['variant'] or '?':<7} {','.join(row['aliases']):<28}"
            f" gate: {row['gate_decision'] or '-'} ({row['gate_reason'] or ''})"
            f" champion by: {row['promoted_by'] or '-'}"
            f" seed: {row['seed'] or '-'} train: {row['train_range'] or '-'} test: {row['test_range'] or '-'}"
        )


def register(app: typer.Typer) -> None:
    app.command("promote")(promote)
    app.command("models")(models)
