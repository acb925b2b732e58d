"""A trivial DAG used by the integration tests to prove that Airflow's own ``dag.test()`` runs here.

Its one task writes the data interval it was given into the file named by ``KLINESTREAM_TEST_OUT``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

with DAG(
    dag_id="klinestream_trivial_roundtrip",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["test"],
) as dag:

    @task
    def write_marker(**context: object) -> str:
        import os
        from pathlib import Path

        marker = f"{context['dag_run'].run_id}"  # type: ignore[attr-defined]
        Path(os.environ["KLINESTREAM_TEST_OUT"]).write_text(marker)
        return marker

    write_marker()
