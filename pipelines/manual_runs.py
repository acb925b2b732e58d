"""MLflow tracking of a model trained by hand (``klinestream train``), the way the retrain DAG tracks its own.

The run goes to the same experiment as the DAG's (``klinestream-training``) with the same tags (``variant``,
``seed``, ``train_range``, ``test_range``, ``git_commit``) and is logged by the same functions
(:mod:`adapters.mlflow.tracking`): params, history, figures, configs, the evaluation's metrics and plots,
and the pyfunc model. Registered (``register=True``), it becomes a new version of the registered model with
the DAG's version tags and the ``challenger`` alias (:func:`pipelines.retrain.register_challenger`), so the
gate and ``klinestream promote`` treat it like any other challenger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from adapters.mlflow import tracking
from models.policy import Policy
from models.settings import Settings
from models.time_range import parse_range
from pipelines.experiments import RunSummary
from pipelines.retrain import register_challenger

log = logging.getLogger(__name__)

#: Tag of runs and versions trained by hand (the DAG's carry ``dag_run_id`` instead).
TRAINED_BY = "klinestream train"


@dataclass(frozen=True)
class TrackedRun:
    """Where a training run landed in MLflow."""

    run_id: str
    experiment_id: str
    model_uri: str
    version: int | None = None
    """The registered version (None when the run was not registered)."""


def track_training(
    settings: Settings, summary: RunSummary, policy_dir: Path, klines: pd.DataFrame, register: bool = False
) -> TrackedRun:
    """Log ``summary`` (a finished :func:`pipelines.experiments.run_training`) as one run of the training
    experiment, with ``policy_dir``'s policy as its pyfunc model; with ``register``, register it as the
    challenger. ``klines``: the klines the run trained and was evaluated on (the input example's source)."""
    if summary.configs is None:
        raise ValueError("the run summary has no configs: track the result of run_training, not metrics.json")
    if register and summary.test is None:
        raise ValueError("registering needs a test range: the gate compares versions on it")
    uri = settings.mlflow_tracking_uri
    ranges = (summary.train, summary.test or "")
    experiment_id = tracking.use_experiment(uri, tracking.TRAINING_EXPERIMENT)
    tags = {**tracking.run_tags(summary.variant, summary.seed, *ranges), "trained_by": TRAINED_BY}
    figures = tracking.training_figures(summary.train_seconds, summary.env_steps, summary.updates)
    extra = {"reward": summary.reward, **summary.extra, "policy_dir": str(policy_dir)}
    end_ms = parse_range(summary.test or summary.train).end_ms
    with mlflow.start_run(run_name=f"{summary.variant}-seed{summary.seed}", tags=tags) as run:
        policy = Policy.load(policy_dir, device="cpu")
        tracking.log_training(summary.configs, policy, summary.history, figures, ranges, extra=extra)
        mlflow.log_params(dict(summary.extra.get("defaults") or {}))  # where the configuration came from
        if summary.report is not None:
            tracking.log_evaluation(summary.report)
            tracking.log_plots(summary.plots)
        model_uri = tracking.log_policy_model(policy_dir, klines[klines["open_time"] < end_ms])
    tracked = TrackedRun(run.info.run_id, experiment_id, model_uri)
    log.info("tracked run_id=%s experiment=%s", tracked.run_id, tracking.TRAINING_EXPERIMENT)
    if not register:
        return tracked
    version_tags = {"variant": summary.variant, "seed": str(summary.seed), "run_id": tracked.run_id,
                    "train_range": ranges[0], "test_range": ranges[1], "trained_by": TRAINED_BY}  # fmt: skip
    version = register_challenger(settings, model_uri, version_tags)
    return TrackedRun(tracked.run_id, experiment_id, model_uri, version)
