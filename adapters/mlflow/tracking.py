"""MLflow tracking of training runs, logging of the pyfunc model and its registration, and the online
learner's weights.

One experiment per task: :data:`TRAINING_EXPERIMENT` for batch training, :data:`ONLINE_EXPERIMENT` for
the stream's online learning (:class:`MlflowOnlineLogger`). A training run logs:

- params: every field of the agent, environment and train configs (``agent.*``, ``env.*``,
  ``train.*``), the feature-spec version and its shape (``feature.*``), the data ranges;
- tags: ``variant``, ``seed``, ``train_range``, ``test_range``, ``git_commit``;
- metrics: the training history (per logged step: loss, epsilon, episode returns...) with
  ``step = env steps``; the evaluation as ``<who>.<accounting>.<figure>`` with who = ``agent`` or
  ``buy_and_hold`` and accounting = ``unit``, ``portfolio_no_fees``, ``portfolio_fees``;
- artifacts: ``configs/*.json``, ``plots/*.png``, and the model (:func:`log_policy_model`).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import requests
import torch
from mlflow import MlflowClient

from adapters.mlflow.pyfunc import POLICY_ARTIFACT, KlinePolicyModel, bundled_code, input_example, model_signature
from models.config import AgentConfig, EnvConfig, TrainConfig, config_to_dict
from models.evaluation import EvaluationReport
from models.policy import Policy

log = logging.getLogger(__name__)

TRAINING_EXPERIMENT = "klinestream-training"
ONLINE_EXPERIMENT = "klinestream-online"
MODEL_ARTIFACT_NAME = "model"
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The figures of the kept seed that the retrain's evaluate task returns (its XCom), by MLflow metric name.
HOLDOUT_SUMMARY = ("agent.portfolio_fees.sharpe", "agent.portfolio_fees.max_drawdown", "agent.portfolio_fees.n_trades",
                   "agent.unit.final_profit", "buy_and_hold.portfolio_fees.sharpe")  # fmt: skip


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The commit of the working tree (suffixed ``-dirty`` with uncommitted changes), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True,
            timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def server_unreachable(tracking_uri: str, timeout: float = 3.0) -> str | None:
    """Why the tracking server of ``tracking_uri`` cannot be used now (one line), or None when it answers.
    A local store (``file:``, ``sqlite:``, a path) needs no server."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    try:
        response = requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout)
    except requests.RequestException as exc:
        return f"{tracking_uri} does not answer ({type(exc).__name__})"
    return None if response.ok else f"{tracking_uri}/health answered HTTP {response.status_code}"


def use_experiment(tracking_uri: str, experiment: str = TRAINING_EXPERIMENT) -> str:
    """Point mlflow at the server and the experiment (created when missing); returns its id."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    # When another process creates the experiment between MLflow's lookup and its create (the parallel train
    # tasks of a first dqn_retrain run), set_experiment returns it without making it the active one, and the
    # runs would go to "Default": activating it by id always sticks.
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def training_params(
    agent: AgentConfig, env: EnvConfig, train: TrainConfig, policy: Policy | None = None
) -> dict[str, Any]:
    """Every hyperparameter, flattened with a prefix per config, plus the feature spec."""
    params: dict[str, Any] = {}
    for prefix, config in (("agent", agent), ("env", env), ("train", train)):
        params.update({f"{prefix}.{k}": v for k, v in config_to_dict(config).items()})
    if policy is not None:
        spec = policy.spec
        params.update(
            {
                "feature.spec_version": spec.version,
                "feature.set": spec.feature_set,
                "feature.window": spec.window,
                "feature.n_features": spec.n_features,
                "feature.symbols": ",".join(spec.symbols),
                "feature.traded_symbol": spec.traded_symbol,
                "feature.history_hours": spec.history_hours,
            }
        )
    return params


def run_tags(variant: str, seed: int, train_range: str, test_range: str) -> dict[str, str]:
    return {
        "variant": variant,
        "seed": str(seed),
        "train_range": train_range,
        "test_range": test_range,
        "git_commit": git_commit(),
    }


def log_training(
    configs: tuple[AgentConfig, EnvConfig, TrainConfig],
    policy: Policy,
    history: Iterable[Mapping[str, float]],
    figures: Mapping[str, float],
    ranges: tuple[str, str],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Log one training into the active run: the hyperparameters and feature spec, the data ranges
    (train, test), the history, the run's figures (``train.seconds``, ``train.env_steps``...) and the configs."""
    agent, env, train = configs
    mlflow.log_params(training_params(agent, env, train, policy))
    mlflow.log_params({"data.train_range": ranges[0], "data.test_range": ranges[1]})
    log_history(history)
    mlflow.log_metrics(dict(figures))
    log_configs(agent, env, train, extra=extra)


def training_figures(seconds: float, env_steps: int, updates: int) -> dict[str, float]:
    """The figures of one training its run records: ``train.seconds``, ``.env_steps``, ``.updates``,
    ``.steps_per_second``."""
    return {"train.seconds": seconds, "train.env_steps": float(env_steps), "train.updates": float(updates),
            "train.steps_per_second": env_steps / max(seconds, 1e-9)}  # fmt: skip


def log_history(history: Iterable[Mapping[str, float]], step_key: str = "env_steps") -> int:
    """Log each history row's numbers as metrics at ``step = row[step_key]``; returns rows logged."""
    count = 0
    for index, row in enumerate(history):
        step = int(row.get(step_key, index))
        values = {f"train.{k}": float(v) for k, v in row.items() if k != step_key and _finite(v)}
        if values:
            mlflow.log_metrics(values, step=step)
        count += 1
    return count


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value))


def evaluation_metrics(report: EvaluationReport) -> dict[str, float]:
    """The report as MLflow metrics: ``<who>.<accounting>.<figure>`` (who = ``agent`` or ``buy_and_hold``)
    for every finite figure, and ``test.hours``."""
    out: dict[str, float] = {}
    for who, by_accounting in (("agent", report.agent), ("buy_and_hold", report.buy_and_hold)):
        for accounting, metrics in by_accounting.items():
            for figure, value in metrics.to_dict().items():
                if _finite(value):
                    out[f"{who}.{accounting}.{figure}"] = float(value)
    out["test.hours"] = float(report.hours)
    return out


def holdout_summary(report: EvaluationReport) -> dict[str, float]:
    """The :data:`HOLDOUT_SUMMARY` metrics of ``report``."""
    metrics = evaluation_metrics(report)
    return {name: metrics[name] for name in HOLDOUT_SUMMARY if name in metrics}


def log_evaluation(report: EvaluationReport) -> dict[str, float]:
    metrics = evaluation_metrics(report)
    mlflow.log_metrics(metrics)
    return metrics


def log_configs(agent: AgentConfig, env: EnvConfig, train: TrainConfig, extra: Mapping[str, Any] | None = None) -> None:
    """The configs as JSON artifacts under ``configs/``."""
    for name, config in (("agent", agent), ("env", env), ("train", train)):
        mlflow.log_dict(config_to_dict(config), f"configs/{name}.json")
    if extra:
        mlflow.log_dict(json.loads(json.dumps(extra, default=str)), "configs/run.json")


def log_plots(paths: Iterable[Path | str]) -> list[str]:
    """PNG files as artifacts under ``plots/``."""
    logged = []
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path="plots")
        logged.append(Path(path).name)
    return logged


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc (given explicitly: inference would load the model in a subprocess)."""
    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]  # fmt: skip


def log_policy_model(policy_dir: Path | str, klines: pd.DataFrame) -> str:
    """Log the saved policy in ``policy_dir`` as the pyfunc model of the active run; returns its URI.

    ``klines``: contract-form klines ending at the test range; the last hours become the input example.
    """
    policy = Policy.load(policy_dir, device="cpu")
    with tempfile.TemporaryDirectory(prefix="klinestream-policy-") as tmp, bundled_code() as code_paths:
        # MLflow keeps the folder's own name: give it the artifact's name, whatever policy_dir is called
        staged = shutil.copytree(policy_dir, Path(tmp) / POLICY_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT_NAME,
            python_model=KlinePolicyModel(),
            artifacts={POLICY_ARTIFACT: str(staged)},
            code_paths=code_paths,
            signature=model_signature(),
            input_example=input_example(klines, policy),
            pip_requirements=pip_requirements(),
            tags={"variant": policy.variant},
        )
    log.info("logged model uri=%s variant=%s", info.model_uri, policy.variant)
    return str(info.model_uri)


def register_model(tracking_uri: str, model_uri: str, name: str, tags: Mapping[str, str]) -> int:
    """Register ``model_uri`` as a new version of ``name`` (created when missing) with ``tags``."""
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description="Klinestream DQN traders (Linear-DQN and LSTM-DQN).")
    version = mlflow.register_model(model_uri, name, tags=dict(tags))
    log.info("registered model=%s version=%s tags=%s", name, version.version, dict(tags))
    return int(version.version)


class MlflowOnlineLogger:
    """The online trader's :class:`~models.ports.OnlineLogger` on MLflow: online weights as runs in
    ``experiment``, tagged ``online=true`` and ``parent_version`` (never registered or aliased)."""

    def __init__(self, tracking_uri: str, model_name: str, experiment: str = ONLINE_EXPERIMENT) -> None:
        self.tracking_uri, self.model_name, self.experiment = tracking_uri, model_name, experiment

    def log_online(self, parent_version: str, policy: Policy, metrics: Mapping[str, float], step: int) -> None:
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_experiment(self.experiment)
        tags = {"online": "true", "parent_version": parent_version, "registered_model": self.model_name}
        with mlflow.start_run(run_name=f"online-{self.model_name}-v{parent_version}-u{step}", tags=tags):
            mlflow.log_metrics(dict(metrics), step=step)
            with tempfile.TemporaryDirectory(prefix="klinestream-online-") as folder:
                mlflow.log_artifacts(str(policy.save(Path(folder) / "policy")), artifact_path="policy")
        log.info("logged online weights model_version=%s online_updates=%d", parent_version, step)
