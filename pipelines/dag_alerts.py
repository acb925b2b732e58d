"""The DAGs' failure callback: one ``dag_failed`` alert per failed DAG run (the log, and Telegram when set).

Given to both DAGs as their DAG-level ``on_failure_callback`` (Airflow calls it once per run that ends failed,
after the tasks' own retries; ``dag.test()`` calls it too). A plain function of the callback context, so
this module imports nothing of Airflow and stays light for DAG parsing; the alert channels are built inside.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from models.alerts import Alert, emit

log = logging.getLogger(__name__)


def dag_failed_alert(context: Mapping[str, Any]) -> Alert:
    """The alert of a failed run from Airflow's callback context (``dag``, ``run_id``, ``ti``, ``reason``)."""
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    dag_id = getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", "?")
    run_id = context.get("run_id") or getattr(dag_run, "run_id", "?")
    ti = context.get("ti") or context.get("task_instance")
    task_id = getattr(ti, "task_id", None)
    reason = str(context.get("reason") or "failed")
    where = f" at task {task_id}" if task_id else ""
    return Alert("dag_failed", "error", f"DAG {dag_id} run {run_id} failed{where} ({reason})",
                 f"dag_failed:{dag_id}:{run_id}", {"dag_id": dag_id, "run_id": run_id, "task_id": task_id,
                                                   "reason": reason})  # fmt: skip


def on_dag_failure(context: Mapping[str, Any]) -> None:
    """Airflow ``on_failure_callback`` of a DAG: send the ``dag_failed`` alert and wait until it is delivered."""
    from adapters.alerting import build_alert_sink
    from models.settings import load_settings

    alert = dag_failed_alert(context)
    sink = build_alert_sink(load_settings())
    try:
        emit(sink, alert)
    finally:
        sink.close()
