"""Champion / challenger promotion on the MLflow registry (aliases, never stages).

- Every new version becomes ``challenger`` (:func:`set_challenger`).
- The gate (:func:`gate_version`) evaluates the challenger and the current champion on the **same**
  holdout klines, after fees (portfolio accounting), and moves ``champion`` only when
  :func:`compare_with_champion` says so (thresholds: :class:`~pipelines.retrain_config.GateConfig`):
  the challenger's Sharpe beats the champion's by more than ``sharpe_margin``, its max drawdown stays
  under an absolute bound and at most ``drawdown_slack`` worse than the champion's, and it made at
  least ``min_trades`` trades. With no champion yet, passing the absolute bounds is enough.
- The displaced champion becomes ``previous``; :func:`rollback` puts it back.
- Each decision and its numbers are written as ``gate.*`` tags on the versions, so the MLflow UI shows
  why a version is (not) the champion.

A person can also set ``champion`` in the MLflow UI: the platform reads the alias, never a copy.
The alias moves themselves (``set_challenger``, ``promote``, ``rollback``) are the MLflow adapter's
(adapters/mlflow/aliases.py); this module decides when.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from adapters.mlflow.aliases import promote, set_tags, utc_timestamp
from adapters.mlflow.registry import CHAMPION, RegistryError, alias_version, load_version, registry_client
from models.alerts import Alert, AlertSink, emit
from models.evaluation import EvaluationReport, ReportedAccounting
from models.policy import Policy
from models.time_range import TimeRange
from pipelines.evaluate import evaluate_policy
from pipelines.retrain_config import GateConfig
from pipelines.walkforward.backtests import FoldMarket, baseline_curve
from pipelines.walkforward.statistics import performance

log = logging.getLogger(__name__)

GATE_ACCOUNTING: ReportedAccounting = "portfolio_fees"


@dataclass(frozen=True)
class HoldoutMetrics:
    """The figures the gate compares, from the portfolio accounting with fees."""

    sharpe: float
    max_drawdown: float
    n_trades: int
    total_return: float = 0.0

    @classmethod
    def from_report(
        cls, report: EvaluationReport, accounting: ReportedAccounting = GATE_ACCOUNTING, buy_and_hold: bool = False
    ) -> HoldoutMetrics:
        """The agent's figures (or buy-and-hold's, through the same environment) in ``accounting``."""
        figures = (report.buy_and_hold if buy_and_hold else report.agent)[accounting]
        return cls(
            sharpe=float(figures.sharpe),
            max_drawdown=float(figures.max_drawdown),
            n_trades=int(figures.n_trades),
            total_return=float(figures.total_return),
        )


#: Staying flat: no return, no risk, no trade.
CASH = HoldoutMetrics(sharpe=0.0, max_drawdown=0.0, n_trades=0, total_return=0.0)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: tuple[str, ...]
    """Why not (every failed check), or why yes."""
    challenger: HoldoutMetrics
    champion: HoldoutMetrics | None = None
    config: GateConfig = field(default_factory=GateConfig)
    baseline: HoldoutMetrics = CASH

    @property
    def summary(self) -> str:
        return ("promoted: " if self.promote else "rejected: ") + "; ".join(self.reasons)


def below_baseline(metrics: HoldoutMetrics, baseline: HoldoutMetrics, name: str) -> list[str]:
    """Why ``metrics`` does not beat the baseline ``name`` (empty when it beats it in return and Sharpe)."""
    failed = []
    if not metrics.total_return > baseline.total_return:
        failed.append(f"return {metrics.total_return:.4f} does not beat {name} {baseline.total_return:.4f}")
    if not metrics.sharpe > baseline.sharpe:
        failed.append(f"sharpe {metrics.sharpe:.4f} does not beat {name} {baseline.sharpe:.4f}")
    return failed


def compare_with_champion(
    challenger: HoldoutMetrics, champion: HoldoutMetrics | None, config: GateConfig, baseline: HoldoutMetrics = CASH
) -> GateDecision:
    """The pure comparison: promote ``challenger`` over ``champion`` (``None`` = no champion yet), given the
    figures of ``config.baseline`` on the same holdout?"""
    failed = below_baseline(challenger, baseline, config.baseline)
    if not math.isfinite(challenger.sharpe):
        failed.append("sharpe is not finite")
    if challenger.max_drawdown > config.max_drawdown:
        failed.append(f"max drawdown {challenger.max_drawdown:.4f} > bound {config.max_drawdown:.4f}")
    if challenger.n_trades < config.min_trades:
        failed.append(f"{challenger.n_trades} trades < minimum {config.min_trades}")
    if config.min_sharpe is not None and challenger.sharpe < config.min_sharpe:
        failed.append(f"sharpe {challenger.sharpe:.4f} < floor {config.min_sharpe:.4f}")
    if champion is not None:
        needed = champion.sharpe + config.sharpe_margin
        if not challenger.sharpe > needed:
            failed.append(
                f"sharpe {challenger.sharpe:.4f} does not beat champion {champion.sharpe:.4f} "
                f"+ margin {config.sharpe_margin:.4f}"
            )
        worst = champion.max_drawdown + config.drawdown_slack
        if challenger.max_drawdown > worst:
            failed.append(
                f"max drawdown {challenger.max_drawdown:.4f} > champion {champion.max_drawdown:.4f} "
                f"+ slack {config.drawdown_slack:.4f}"
            )
    if failed:
        return GateDecision(False, tuple(failed), challenger, champion, config, baseline)
    why = (
        f"sharpe {challenger.sharpe:.4f} beats champion {champion.sharpe:.4f} + margin {config.sharpe_margin:.4f}"
        if champion is not None
        else "no champion yet and the absolute bounds pass"
    )
    beats = (
        f"return {challenger.total_return:.4f} and sharpe {challenger.sharpe:.4f} beat {config.baseline} "
        f"{baseline.total_return:.4f} and {baseline.sharpe:.4f}"
    )
    return GateDecision(True, (why, beats), challenger, champion, config, baseline)


def decision_tags(decision: GateDecision, champion_version: int | None, holdout: str) -> dict[str, Any]:
    """The ``gate.*`` tags of one decision, set on the challenger version."""
    tags: dict[str, Any] = {
        "gate.decision": "promoted" if decision.promote else "rejected",
        "gate.reason": "; ".join(decision.reasons)[:4900],
        "gate.holdout": holdout,
        "gate.decided_at": utc_timestamp(),
        "gate.config": json.dumps(asdict(decision.config), sort_keys=True),
        "gate.champion_version": "none" if champion_version is None else champion_version,
        "gate.baseline": decision.config.baseline,
    }
    tags.update({f"gate.challenger.{k}": v for k, v in asdict(decision.challenger).items()})
    tags.update({f"gate.baseline.{k}": v for k, v in asdict(decision.baseline).items()})
    if decision.champion is not None:
        tags.update({f"gate.champion.{k}": v for k, v in asdict(decision.champion).items()})
    return tags


def holdout_metrics(
    tracking_uri: str, name: str, version: int, klines: pd.DataFrame, holdout: TimeRange, fee_rate: float
) -> HoldoutMetrics:
    """Evaluate a registered version on the holdout klines (after fees)."""
    loaded = load_version(tracking_uri, name, version, device="cpu")
    return HoldoutMetrics.from_report(evaluate_policy(loaded.policy, klines, holdout, fee_rate=fee_rate))


def baseline_metrics(
    kind: str, policy: Policy, report: EvaluationReport, klines: pd.DataFrame, holdout: TimeRange, fee_rate: float
) -> HoldoutMetrics:
    """The baseline ``kind``'s figures on the holdout hours ``policy`` traded (``report``), after fees, through
    the same environment."""
    if kind == "cash":
        return CASH
    if kind == "buy_and_hold":
        return HoldoutMetrics.from_report(report, buy_and_hold=True)
    curve = baseline_curve(kind, FoldMarket.from_klines(klines, policy.spec, holdout), fee_rate)
    figures = performance(curve.equity, curve.fees, curve.notional, curve.n_trades)
    return HoldoutMetrics(figures.sharpe, figures.max_drawdown, figures.n_trades, figures.total_return)


def flag_champion(
    tracking_uri: str, name: str, version: int, champion: HoldoutMetrics, baseline: HoldoutMetrics, config: GateConfig,
    holdout: str,
) -> list[str]:  # fmt: skip
    """Tag the champion ``gate.below_baseline`` (with the reasons, or "no") on the newest holdout; warn when below."""
    failed = below_baseline(champion, baseline, config.baseline)
    tags = {"gate.below_baseline": "; ".join(failed) if failed else "no", "gate.below_baseline.holdout": holdout,
            "gate.below_baseline.checked_at": utc_timestamp()}  # fmt: skip
    set_tags(registry_client(tracking_uri), name, version, tags)
    if failed:
        log.warning("gate champion model=%s version=%d is below the %s baseline on %s: %s", name, version,
                    config.baseline, holdout, "; ".join(failed))  # fmt: skip
    return failed


def gate_version(
    tracking_uri: str,
    name: str,
    version: int,
    klines: pd.DataFrame,
    holdout: TimeRange,
    config: GateConfig,
    fee_rate: float = 0.001,
    alerts: AlertSink | None = None,
) -> GateDecision:
    """Compare ``version`` with the current champion on ``holdout``; tag it; promote when it wins; tell
    ``alerts`` the decision (a ``gate_decision`` alert, keyed by model, version, champion and holdout) and,
    before it, a champion that does not beat the baseline (a ``champion_below_baseline`` alert)."""
    client = registry_client(tracking_uri)
    champion_version = alias_version(tracking_uri, name, CHAMPION)
    if champion_version == version:
        raise RegistryError(f"version {version} of {name!r} is already the champion; nothing to gate")
    policy = load_version(tracking_uri, name, version, device="cpu").policy
    report = evaluate_policy(policy, klines, holdout, fee_rate=fee_rate)
    challenger = HoldoutMetrics.from_report(report)
    baseline = baseline_metrics(config.baseline, policy, report, klines, holdout, fee_rate)
    champion = None
    if champion_version is not None:
        champion = holdout_metrics(tracking_uri, name, champion_version, klines, holdout, fee_rate)
        below = flag_champion(tracking_uri, name, champion_version, champion, baseline, config, str(holdout))
        if below and alerts is not None:
            emit(alerts, below_baseline_alert(name, champion_version, config.baseline, str(holdout), below))
    decision = compare_with_champion(challenger, champion, config, baseline)
    set_tags(client, name, version, decision_tags(decision, champion_version, str(holdout)))
    if decision.promote:
        promote(client, name, version, how="gate", tracking_uri=tracking_uri)
    log.info("gate model=%s version=%d champion=%s %s", name, version, champion_version, decision.summary)
    if alerts is not None:
        emit(alerts, gate_alert(name, version, champion_version, str(holdout), decision))
    return decision


def gate_alert(name: str, version: int, champion_version: int | None, holdout: str, decision: GateDecision) -> Alert:
    """The ``gate_decision`` alert: promoted or rejected, why, and the holdout figures of both versions."""
    was = "no champion before" if champion_version is None else f"champion was v{champion_version}"
    verdict = "promoted to champion" if decision.promote else "rejected, the champion stays"
    c = decision.challenger
    return Alert("gate_decision", "info" if decision.promote else "warning",
                 f"{name} v{version} {verdict} ({was}): {'; '.join(decision.reasons)}",
                 f"gate_decision:{name}:{version}:{champion_version}:{holdout}",
                 {"model": name, "version": version, "champion_version": champion_version, "holdout": holdout,
                  "promoted": decision.promote, "sharpe": round(c.sharpe, 4), "max_drawdown": round(c.max_drawdown, 4),
                  "trades": c.n_trades})  # fmt: skip


def below_baseline_alert(name: str, champion_version: int, baseline: str, holdout: str, failed: list[str]) -> Alert:
    """The ``champion_below_baseline`` alert: the champion that trades does not beat ``baseline`` on the holdout."""
    return Alert("champion_below_baseline", "warning",
                 f"{name} champion v{champion_version} is below the {baseline} baseline on {holdout}: "
                 f"{'; '.join(failed)}",
                 f"champion_below_baseline:{name}:{champion_version}:{holdout}",
                 {"model": name, "version": champion_version, "baseline": baseline, "holdout": holdout,
                  "reasons": failed})  # fmt: skip
