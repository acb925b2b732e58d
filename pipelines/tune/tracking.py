"""A study in MLflow: one parent run per study, one nested run per trial. It registers nothing.

- parent run (experiment :data:`pipelines.tune.config.EXPERIMENT` unless told otherwise), tags ``kind=tune-study``,
  ``study``,
  ``variant``: the study's config (``tune.*``) and space (``space.*``) as params; as metrics ``n_trials``
  (finished trials: complete + pruned, what the walk-forward's deflated Sharpe counts), ``best.objective``
  and ``best.trial`` (logged again at each resume, step = the number of trials); the tag ``best_trial``;
  the study's summary as the artifact ``summary.json`` and the parameter importances as ``importance.*``.
  A resumed study reopens the same parent run (its id is kept in the study's user attributes).
- nested run per trial (started in the worker process that runs it), tags ``kind=tune-trial``, ``study``,
  ``trial`` (its number) and ``state`` (running → complete | pruned; MLflow status FAILED when it failed):
  every field of the trial's configuration as params (``agent.*``, ``env.*``, ``train.*``, ``features.*``)
  and the sampled ones as ``search.*``; per fold ``fold.sharpe``, ``fold.score``, ``fold.n_trades``, ...
  (step = fold index) and ``objective.running``; at the end ``objective``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from adapters.mlflow import tracking
from pipelines.defaults import Configuration
from pipelines.tune.objective import FoldScore, TrialLog

log = logging.getLogger(__name__)


def _flat(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else value


@dataclass(frozen=True)
class StudyRun:
    """Where a study's runs go: the server, the experiment and the parent run."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str


def open_parent_run(
    tracking_uri: str,
    experiment: str,
    study: str,
    config: Mapping[str, Any],
    space: Mapping[str, Any],
    existing_run_id: str | None,
) -> StudyRun:
    """Reopen the study's parent run (status RUNNING again), or create it with the config and space as params."""
    experiment_id = tracking.use_experiment(tracking_uri, experiment)
    client = MlflowClient(tracking_uri)
    if existing_run_id:
        try:
            run = client.get_run(existing_run_id)
            if run.info.lifecycle_stage == "active":
                client.update_run(existing_run_id, status="RUNNING")
                return StudyRun(tracking_uri, run.info.experiment_id, existing_run_id)
        except mlflow.exceptions.MlflowException:
            log.warning("parent run %s of study %s is gone: starting a new one", existing_run_id, study)
    tags = {
        "kind": "tune-study",
        "study": study,
        "variant": str(config["variant"]),
        "git_commit": tracking.git_commit(),
    }
    run = client.create_run(experiment_id, run_name=f"study {study}", tags=tags)
    params = [Param(f"tune.{k}", str(_flat(v))) for k, v in config.items()]
    params += [Param(f"space.{k}", str(v)) for k, v in {**space.get("fixed", {}), **space.get("params", {})}.items()]
    client.log_batch(run.info.run_id, params=params)
    return StudyRun(tracking_uri, experiment_id, run.info.run_id)


def close_parent_run(run: StudyRun, n_trials: int, best: tuple[int, float] | None, failed: bool = False) -> None:
    """Log the trial count and the best trial so far; end the parent run."""
    client = MlflowClient(run.tracking_uri)
    metrics = [Metric("n_trials", float(n_trials), 0, n_trials)]
    if best is not None:
        metrics += [Metric("best.objective", best[1], 0, n_trials), Metric("best.trial", float(best[0]), 0, n_trials)]
        client.set_tag(run.parent_run_id, "best_trial", str(best[0]))
    client.log_batch(run.parent_run_id, metrics=metrics, tags=[RunTag("n_trials", str(n_trials))])
    client.set_terminated(run.parent_run_id, status="FAILED" if failed else "FINISHED")


class _MlflowTrialLog:
    def __init__(self, run_id: str) -> None:
        self.run_id: str | None = run_id

    def fold(self, score: FoldScore, running: float) -> None:
        figures = {k: v for k, v in score.to_dict().items() if isinstance(v, float)}
        mlflow.log_metrics(
            {f"fold.{k}": v for k, v in figures.items()} | {"objective.running": running}, step=score.fold
        )
        mlflow.log_metrics({f"{score.month}.{k}": v for k, v in figures.items()})

    def finish(self, state: str, value: float) -> None:
        mlflow.log_metric("objective", value)
        mlflow.set_tag("state", state)


class MlflowRecorder:
    """Each trial as a nested run under the study's parent run."""

    def __init__(self, run: StudyRun, study: str) -> None:
        self.run, self.study = run, study

    @contextmanager
    def trial(self, number: int, params: dict[str, Any], configuration: Configuration) -> Iterator[TrialLog]:
        mlflow.set_tracking_uri(self.run.tracking_uri)
        tags = {"kind": "tune-trial", "study": self.study, "trial": str(number), "state": "running"}
        with mlflow.start_run(
            experiment_id=self.run.experiment_id,
            run_name=f"trial {number:03d}",
            parent_run_id=self.run.parent_run_id,
            tags=tags,
        ) as active:
            mlflow.log_params({k: _flat(v) for k, v in configuration.params().items()})
            mlflow.log_params({f"search.{k}": v for k, v in params.items()})
            try:
                yield _MlflowTrialLog(active.info.run_id)
            except BaseException:
                mlflow.set_tag("state", "failed")
                raise


def log_summary(tracking_uri: str, parent_run_id: str, summary: Mapping[str, Any]) -> None:
    """The study's summary on its parent run: ``summary.json`` and the parameter importances as metrics."""
    client = MlflowClient(tracking_uri)
    client.log_dict(parent_run_id, dict(summary), "summary.json")
    importance = summary.get("importance") or {}
    if importance:
        metrics = [Metric(f"importance.{k}", float(v), 0, int(summary["n_trials"])) for k, v in importance.items()]
        client.log_batch(parent_run_id, metrics=metrics)
