"""The demo's retrain and promotion: ``dag.test()`` of ``dqn_retrain`` with a short configuration, then
the gate's verdict read back from the registry — and, when no new version passed the gate, an explicit
promotion of the better of the two, said as such (never a faked pass).

Why ``dag.test()`` and not a trigger through the running Airflow's REST API: on two cores the
scheduler's LocalExecutor starts every task in a fresh interpreter (torch, MLflow and pandas imported
seven times) and its workers read the settings of whoever started the stack, not the demo's; the
in-process run trains the same DAG, task by task, with exactly the demo's settings, and records the
run in the demo's own Airflow metadata database (``<home>/demo/airflow``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from adapters.mlflow.registry import CHAMPION, alias_version, registry_client
from models.errors import KlinestreamError
from models.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionOutcome:
    """One version this retrain registered, with the gate's verdict on the holdout."""

    version: int
    variant: str
    decision: str
    reason: str
    sharpe: float
    max_drawdown: float
    n_trades: int
    total_return: float


@dataclass(frozen=True)
class PromotionOutcome:
    champion: int
    how: str
    """``gate`` (a version passed), or ``explicit`` (none passed: the better one was promoted by the demo)."""
    note: str
    versions: tuple[VersionOutcome, ...]
    dag_run_id: str


#: Short training for ``--quick``: 480 environment steps per variant (minutes on two busy cores; the
#: models are weak — the point is the path, the full protocol is ``--full``).
QUICK_TRAINING = {"episodes": 1, "episode_hours": 240, "n_envs": 2}


def retrain_conf(
    train_range: str, test_range: str, quick: bool, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run configuration of ``dqn_retrain``: both variants, seed 0; short training with ``quick``."""
    conf: dict[str, Any] = {
        "train_range": train_range,
        "test_range": test_range,
        "variants": ["linear", "lstm"],
        "seeds": [0],
        "promote": True,
    }
    if quick:
        conf.update(QUICK_TRAINING)
    conf.update(overrides or {})
    return conf


def run_retrain(conf: dict[str, Any]) -> str:
    """``dag.test()`` of dqn_retrain with ``conf``; returns the run id (raises when the run failed)."""
    from klinestream.airflow_dags import load_dag

    dag_run = load_dag("dqn_retrain").test(run_conf=conf)
    if dag_run.state != "success":
        raise KlinestreamError(f"dqn_retrain run {dag_run.run_id} ended {dag_run.state}; see the task logs above")
    return str(dag_run.run_id)


def _float(tags: dict[str, str], key: str) -> float:
    try:
        return float(tags.get(key, "nan"))
    except ValueError:
        return float("nan")


def versions_of_run(settings: Settings, dag_run_id: str) -> list[VersionOutcome]:
    """The versions registered by ``dag_run_id`` and the gate's tags on them, oldest first."""
    client = registry_client(settings.mlflow_tracking_uri)
    found = client.search_model_versions(f"name='{settings.mlflow_model_name}'")
    out = []
    for version in found:
        tags = dict(version.tags or {})
        if tags.get("dag_run_id") != dag_run_id:
            continue
        out.append(
            VersionOutcome(
                version=int(version.version),
                variant=tags.get("variant", "?"),
                decision=tags.get("gate.decision", "none"),
                reason=tags.get("gate.reason", ""),
                sharpe=_float(tags, "gate.challenger.sharpe"),
                max_drawdown=_float(tags, "gate.challenger.max_drawdown"),
                n_trades=int(_float(tags, "gate.challenger.n_trades") if "gate.challenger.n_trades" in tags else 0),
                total_return=_float(tags, "gate.challenger.total_return"),
            )
        )
    if not out:
        raise KlinestreamError(f"dqn_retrain run {dag_run_id} registered no version of {settings.mlflow_model_name}")
    return sorted(out, key=lambda v: v.version)


def settle_champion(settings: Settings, dag_run_id: str) -> PromotionOutcome:
    """The champion after the gate; when the gate promoted none of this run's versions, promote the one
    with the better holdout Sharpe explicitly (tagged ``gate.promoted_by=demo-explicit``) and say why."""
    from adapters.mlflow.aliases import promote

    uri, name = settings.mlflow_tracking_uri, settings.mlflow_model_name
    versions = versions_of_run(settings, dag_run_id)
    champion = alias_version(uri, name, CHAMPION)
    passed = [v for v in versions if v.decision == "promoted"]
    if passed and champion in {v.version for v in passed}:
        chosen = next(v for v in passed if v.version == champion)
        note = f"v{chosen.version} ({chosen.variant}) passed the gate: {chosen.reason}"
        return PromotionOutcome(chosen.version, "gate", note, tuple(versions), dag_run_id)
    ranked = sorted(versions, key=lambda v: v.sharpe if v.sharpe == v.sharpe else float("-inf"), reverse=True)
    best = ranked[0]
    promote(registry_client(uri), name, best.version, how="demo-explicit", tracking_uri=uri)
    reasons = "; ".join(f"v{v.version} ({v.variant}) {v.decision}: {v.reason}" for v in versions)
    note = (
        f"NO version passed the gate ({reasons}). The demo promoted v{best.version} ({best.variant}), the better "
        f"holdout Sharpe {best.sharpe:.3f}, EXPLICITLY so that the live part has a model to trade."
    )
    log.warning("demo promotion model=%s version=%d how=demo-explicit", name, best.version)
    return PromotionOutcome(best.version, "explicit", note, tuple(versions), dag_run_id)
