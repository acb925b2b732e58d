"""``dqn_retrain``: retrain Linear-DQN and LSTM-DQN on rolling windows, register both in MLflow, gate the champion.

**Ranges.** Unless the UI pins ``train_range``/``test_range``, they roll with the run: the holdout is the last
``holdout_days`` of validated klines up to the run's data-interval end (now, for a manual trigger), training
is the ``train_months`` before it, less an embargo of at least the feature window plus one hour
(pipelines/retrain.py: ``plan_ranges``). The ranges, the embargo and the snapshot's SHA-256 are MLflow params
of every run (``data.*``).

**Trigger.** ``AssetOrTimeSchedule``: weekly (Monday 03:00 UTC) **or** when klines_backfill publishes new
validated klines (the lake Asset, every hourly backfill). The first task, ``due``, is a **short-circuit**
(``@task.short_circuit``): a run triggered by the asset goes on only when at least ``min_new_days`` of new
validated klines lie after the holdout end of the last successful rolling retrain; otherwise every other
task is skipped, so the hourly backfill never retrains hourly. The last retrain's holdout end is read from
Airflow's **asset events**: the ``gate`` task publishes the ``RETRAINED`` asset with
``extra={"holdout_end", "ranges_from", ...}``, and ``due`` reads it as an inlet. Weekly and manual runs
always retrain.

**Gate.** A challenger is promoted only when it beats the ``gate_baseline`` (cash, buy-and-hold or the trend
rule) on the holdout after fees, passes the drawdown and trade bounds, and beats the champion (if any);
every figure and reason is a ``gate.*`` tag on the version (pipelines/promotion.py).

Thin: every task calls one function of ``pipelines/retrain.py``; heavy imports happen inside the tasks;
tasks pass paths, run ids and version numbers, never frames or models.

    due ─► plan ─► snapshot ─► train[variant] ─► evaluate[variant] ─► register[variant] ─► gate ─► (RETRAINED)
                                 (one mapped task per variant, in parallel)

The params' defaults are :class:`~pipelines.retrain_config.RetrainConfig`'s and ``GateConfig``'s (a
light module: nothing heavy is imported when Airflow parses this file).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, get_current_context, task

from models.config import REWARD_KINDS, EnvConfig
from pipelines.dag_alerts import on_dag_failure
from pipelines.retrain_config import GATE_BASELINES, VARIANTS, GateConfig, RetrainConfig

#: Published by the klines_backfill DAG (dags/klines_backfill.py) when validated klines land in the lake.
VALIDATED_KLINES = Asset("klinestream://lake/validated/klines_1h")
#: Published by this DAG's gate task after every successful retrain (extra: the ranges it used).
RETRAINED = Asset("klinestream://mlflow/dqn_retrain/retrained")
#: How many of the newest RETRAINED events ``due`` reads to find the last rolling retrain.
RECENT_EVENTS = 50

RETRAIN, GATE = RetrainConfig(), GateConfig()
PARAMS = {
    "train_range": Param(RETRAIN.train_range, type=["null", "string"],
                         description="Pinned training klines, START:END (UTC, end excluded); empty = the "
                                     "train_months before the embargo (needs a pinned test_range)."),
    "test_range": Param(RETRAIN.test_range, type=["null", "string"],
                        description="Pinned holdout (evaluation and gate); empty = the last holdout_days of "
                                    "validated klines up to the run's data-interval end."),
    "holdout_days": Param(RETRAIN.holdout_days, type="integer", minimum=1,
                          description="Days of the newest validated klines the gate judges on."),
    "train_months": Param(RETRAIN.train_months, type="integer", minimum=1,
                          description="Calendar months of training klines before the embargo."),
    "embargo_hours": Param(RETRAIN.embargo_hours, type=["null", "integer"], minimum=1,
                           description="Hours between training and holdout; empty = feature window + 1 h."),
    "min_new_days": Param(RETRAIN.min_new_days, type="integer", minimum=1,
                          description="Days of new validated klines that let an asset-triggered run retrain."),
    "variants": Param(list(RETRAIN.variants), type="array", items={"type": "string", "enum": list(VARIANTS)},
                      description="Q-network variants to train (one parallel task each)."),
    "seeds": Param(list(RETRAIN.seeds), type="array", items={"type": "integer"},
                   description="Seeds per variant (one MLflow run each; the best in-sample is registered)."),
    "reward": Param(RETRAIN.reward, type=["null", "string"], enum=[None, *REWARD_KINDS],
                    description="Training reward: risk/log_return pay fees; reference reproduces the paper only; "
                    "empty = the project's defaults' (risk unless a study chose another)."),
    "episodes": Param(RETRAIN.episodes, type=["null", "integer"], minimum=1,
                      description="Episodes per environment; empty = the project's default training length."),
    "episode_hours": Param(RETRAIN.episode_hours, type=["null", "integer"], minimum=2,
                           description=f"Episode length in hours; empty = {EnvConfig.episode_hours}."),
    "n_envs": Param(RETRAIN.n_envs, type=["null", "integer"], minimum=1,
                    description="Parallel environments; empty = default."),
    "options": Param(dict(RETRAIN.options), type="object",
                     description="Agent options (models/options.py), e.g. {\"min_hold_hours\": 4}."),
    "promote": Param(RETRAIN.promote, type="boolean",
                     description="Run the champion/challenger gate after registering."),
    "gate_sharpe_margin": Param(GATE.sharpe_margin, type="number",
                                description="Sharpe (after fees) the challenger must add."),
    "gate_max_drawdown": Param(GATE.max_drawdown, type="number",
                               description="Largest max drawdown allowed (fraction)."),
    "gate_drawdown_slack": Param(GATE.drawdown_slack, type="number",
                                 description="How much worse than the champion's drawdown."),
    "gate_min_trades": Param(GATE.min_trades, type="integer", minimum=0, description="Fewest trades on the holdout."),
    "gate_baseline": Param(GATE.baseline, type="string", enum=list(GATE_BASELINES),
                           description="What the challenger must beat on the holdout after fees, in return and "
                                       "Sharpe (cash = a positive return and Sharpe)."),
}  # fmt: skip

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "klinestream",
    "retries": 1,
    "retry_delay": timedelta(minutes=2),
    "execution_timeout": timedelta(hours=2),
}


def _context() -> tuple[Any, Any, str]:
    """(settings, retrain config, dag run id) of the running task."""
    from adapters.mlflow.accounts import use_account
    from models.credentials import MlflowAccount
    from models.settings import load_settings
    from pipelines.retrain_config import config_from_params

    context = get_current_context()
    settings = load_settings()
    use_account(settings, MlflowAccount.WRITER)  # registers versions and moves the challenger alias
    return settings, config_from_params(context["params"]), str(context["dag_run"].run_id)


with DAG(
    dag_id="dqn_retrain",
    description="Retrain both DQN variants on the validated lake, register them in MLflow, gate the champion.",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"), assets=[VALIDATED_KLINES]
    ),
    # no start_date: unpausing waits for the next Monday instead of starting the latest missed week at once
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    default_args=DEFAULT_ARGS,
    on_failure_callback=on_dag_failure,  # one dag_failed alert per failed run
    tags=["klinestream", "training", "mlflow"],
    doc_md=__doc__,
) as dag:

    @task.short_circuit(task_id="due", inlets=[RETRAINED], execution_timeout=timedelta(minutes=5))
    def due() -> bool:
        """Asset-triggered runs go on only after ``min_new_days`` of new validated klines; the others always."""
        from pipelines.retrain import due_from_events

        settings, config, _ = _context()
        context = get_current_context()
        run_type = getattr(context["dag_run"].run_type, "value", str(context["dag_run"].run_type))
        events = context["inlet_events"][RETRAINED].ascending(False).limit(RECENT_EVENTS)
        return due_from_events(settings, config, run_type, [dict(e.extra or {}) for e in events])

    @task(task_id="plan", execution_timeout=timedelta(minutes=2))
    def plan() -> list[str]:
        """Validate the params; the variants to train."""
        _, config, _ = _context()
        return list(config.variants)

    @task(task_id="snapshot", execution_timeout=timedelta(minutes=30))
    def snapshot_task() -> dict[str, Any]:
        """Snapshot the validated lake's klines of the run's ranges into one Parquet file."""
        from pipelines.retrain import build_snapshot, interval_end_ms, work_dir

        settings, config, run_id = _context()
        context = get_current_context()
        end = interval_end_ms(context.get("data_interval_end"), context["dag_run"].run_after)
        return build_snapshot(settings, config, work_dir(settings, run_id), end)

    @task(task_id="train", map_index_template="{{ variant }}")
    def train(snapshot: dict[str, Any], variant: str) -> dict[str, Any]:
        """Train one variant (one MLflow run per seed)."""
        from pipelines.retrain import train_variant, work_dir

        get_current_context()["variant"] = variant  # type: ignore[typeddict-unknown-key]
        settings, config, run_id = _context()
        return train_variant(settings, config, snapshot, variant, work_dir(settings, run_id), run_id)

    @task(task_id="evaluate", map_index_template="{{ variant }}", execution_timeout=timedelta(minutes=30))
    def evaluate(snapshot: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
        """Backtest on the holdout (agent and buy-and-hold, both accountings) and log metrics and plots."""
        from pipelines.retrain import evaluate_variant

        get_current_context()["variant"] = trained["variant"]  # type: ignore[typeddict-unknown-key]
        settings, config, _ = _context()
        return evaluate_variant(settings, config, snapshot, trained)

    @task(task_id="register", map_index_template="{{ variant }}", execution_timeout=timedelta(minutes=20))
    def register(snapshot: dict[str, Any], evaluated: dict[str, Any]) -> dict[str, Any]:
        """Log the pyfunc model, register a new version of the model and make it the challenger."""
        from pipelines.retrain import register_variant

        get_current_context()["variant"] = evaluated["variant"]  # type: ignore[typeddict-unknown-key]
        settings, config, run_id = _context()
        return register_variant(settings, config, snapshot, evaluated, run_id)

    @task(task_id="gate", outlets=[RETRAINED], execution_timeout=timedelta(minutes=30))
    def gate(snapshot: dict[str, Any], registered: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Promote a challenger that beats the baseline and the champion on the holdout (or none); tag every
        decision; publish RETRAINED with the ranges of this retrain."""
        from pipelines.retrain import gate_versions, retrained_extra

        settings, config, run_id = _context()
        decisions = gate_versions(settings, config, snapshot, list(registered))
        get_current_context()["outlet_events"][RETRAINED].extra = retrained_extra(settings, snapshot, run_id, decisions)
        return decisions

    variants = plan()
    snapshot = snapshot_task()
    due() >> variants >> snapshot
    trained = train.partial(snapshot=snapshot).expand(variant=variants)
    evaluated = evaluate.partial(snapshot=snapshot).expand(trained=trained)
    registered = register.partial(snapshot=snapshot).expand(evaluated=evaluated)
    gate(snapshot, registered)
