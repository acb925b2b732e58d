"""``dqn_walkforward``: walk-forward evaluation of Linear-DQN and LSTM-DQN on the validated lake.

Triggered from the Airflow UI (params below). For each fold (training window, embargo, test month) each
variant's seeds are trained by the retrain DAG's training code and backtested on the test month beside
cash, buy-and-hold and a trend rule; the months are stitched into one out-of-sample equity curve per
strategy, with bootstrap, probabilistic and deflated Sharpe ratios, and the run ends with a report
(Markdown + plots) and an MLflow parent run with one nested run per fold. It registers no model.

    plan ─┬─► snapshot ─► train[fold, variant] ─► report ─► log
          └──────────────────┘ (one mapped task per fold × variant)

Why the seeds are batched inside a task rather than mapped one by one: the seeds of a (fold, variant)
share the klines, the features, the environment and the replay layout, and train as one batched ensemble
(pipelines.train.train_ensemble): one process start and one dataset build instead of K, and the K
networks step together (a small gain per member on a CPU, a large one on a GPU where each small kernel
is launch-bound). Mapping (fold, variant) still gives a Celery or Kubernetes executor 2 × the number of
folds independent tasks of comparable length to spread over machines. Thin: every task calls one
function of ``pipelines/walkforward``; heavy imports happen inside the tasks; tasks pass paths.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

from models.config import REWARD_KINDS

PARAMS = {
    "test_range": Param("2022-01-01:2023-02-01", type="string",
                        description="Test months, START:END (UTC, end excluded), cut into test steps."),
    "train_months": Param(12, type="integer", minimum=1, description="Months of klines per training window."),
    "window": Param("sliding", type="string", enum=["sliding", "expanding"],
                    description="sliding = the last train_months; expanding = from the first fold's start."),
    "embargo_hours": Param(None, type=["null", "integer"], minimum=1,
                           description="Hours between training and test; empty = feature window + 1 h (35)."),
    "test_months": Param(1, type="integer", minimum=1, description="Calendar months per test step."),
    "variants": Param(["linear", "lstm"], type="array", items={"type": "string", "enum": ["linear", "lstm"]},
                      description="Q-network variants (one mapped task per fold and variant)."),
    "seeds": Param([0, 1, 2, 3, 4], type="array", items={"type": "integer"},
                   description="Seeds per variant, trained together as one batched ensemble per fold."),
    "steps": Param(None, type=["null", "integer"], minimum=1,
                   description="Env steps per member; empty = the project's default configuration."),
    "n_envs": Param(None, type=["null", "integer"], minimum=1, description="Parallel environments; empty = default."),
    "episode_hours": Param(None, type=["null", "integer"], minimum=2, description="Episode length; empty = 720."),
    "fee_rate": Param(None, type=["null", "number"], minimum=0, description="Fee per side; empty = the settings'."),
    "reward": Param(None, type=["null", "string"], enum=[None, *REWARD_KINDS],
                    description="Training reward: risk/log_return pay fees; reference reproduces the paper only; "
                    "empty = the project's defaults' (risk unless a study chose another)."),
    "options": Param({}, type="object",
                     description="Agent options (models/options.py), e.g. {\"min_hold_hours\": 4}."),
    "extra_trials": Param(0, type="integer", minimum=0,
                          description="Trials tried elsewhere (e.g. a search) that the deflated Sharpe counts."),
    "bootstrap": Param(1000, type="integer", minimum=100, description="Bootstrap samples of the Sharpe interval."),
    "online_replay": Param(False, type="boolean",
                           description="Also trade each test month with the stream's trader, online learning "
                                       "off and on (the report says what online learning does to each variant; "
                                       "slower: two hour-by-hour replays per member and month)."),
}  # fmt: skip

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "klinestream",
    "retries": 1,
    "retry_delay": timedelta(minutes=2),
    "execution_timeout": timedelta(hours=2),
}


def _context() -> tuple[Any, Any, Any]:
    """(settings, walk-forward config, work folder) of the running task."""
    from adapters.mlflow.accounts import use_account
    from models.credentials import MlflowAccount
    from models.settings import load_settings
    from pipelines.walkforward.runner import config_from_params, work_dir

    context = get_current_context()
    settings = load_settings()
    use_account(settings, MlflowAccount.WRITER)  # logs the walk-forward's runs
    params = {**context["params"], "symbols": settings.symbols, "traded_symbol": settings.traded_symbol,
              "defaults_file": str(settings.defaults_file or "")}  # fmt: skip
    config = config_from_params(params, settings.fee_rate)
    return settings, config, work_dir(settings.home, str(context["dag_run"].run_id))


with DAG(
    dag_id="dqn_walkforward",
    description="Walk-forward evaluation of both DQN variants against cash, buy-and-hold and a trend rule.",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    default_args=DEFAULT_ARGS,
    tags=["klinestream", "evaluation", "mlflow"],
    doc_md=__doc__,
) as dag:

    @task(task_id="plan", execution_timeout=timedelta(minutes=2))
    def plan() -> list[dict[str, Any]]:
        """Validate the params; the (fold, variant) tasks."""
        from pipelines.walkforward.runner import tasks

        _, config, _ = _context()
        return [{"fold": fold, "variant": variant} for fold, variant in tasks(config)]

    @task(task_id="snapshot", execution_timeout=timedelta(minutes=30))
    def snapshot() -> str:
        """Freeze the validated lake's klines of the whole walk-forward into one Parquet file."""
        from pipelines.walkforward.runner import snapshot_from_lake

        settings, config, work = _context()
        return str(snapshot_from_lake(settings, config, work))

    @task(task_id="train", map_index_template="{{ fold_variant }}")
    def train(snapshot: str, item: dict[str, Any]) -> dict[str, Any]:
        """Train one variant's seeds on one fold (a batched ensemble), backtest them on its test month and
        replay it through the stream's trader (online learning off and on)."""
        from klinestream.online_replay import walkforward_replay
        from pipelines.walkforward.runner import train_fold_variant

        get_current_context()["fold_variant"] = f"{item['fold']}-{item['variant']}"  # type: ignore[typeddict-unknown-key]
        settings, config, work = _context()
        fold = config.folds()[int(item["fold"])]
        return train_fold_variant(config, snapshot, fold, item["variant"], work, settings.device,
                                  replay=walkforward_replay)  # fmt: skip

    @task(task_id="report", execution_timeout=timedelta(minutes=30))
    def report(snapshot: str, trained: list[dict[str, Any]]) -> str:
        """Baselines, stitching and statistics; write summary.json and the Markdown report with its plots."""
        from pipelines.walkforward.report import write_report
        from pipelines.walkforward.summary import summarise

        _, config, work = _context()
        summary = summarise(config, snapshot, work, list(trained))
        return str(write_report(summary, work / "report"))

    @task(task_id="log", execution_timeout=timedelta(minutes=20))
    def log(report_path: str) -> str:
        """Log the MLflow parent run (stitched figures, report) and one nested run per fold."""
        import json
        from pathlib import Path

        from pipelines.walkforward.mlflow_runs import log_walkforward
        from pipelines.walkforward.summary import SUMMARY_FILE

        settings, _, work = _context()
        summary = json.loads((work / SUMMARY_FILE).read_text())
        run_id = str(get_current_context()["dag_run"].run_id)
        return log_walkforward(settings.mlflow_tracking_uri, summary, Path(report_path).parent, work,
                               {"dag_run_id": run_id})  # fmt: skip

    items = plan()
    frozen = snapshot()
    items >> frozen
    trained = train.partial(snapshot=frozen).expand(item=items)
    log(report(frozen, trained))
