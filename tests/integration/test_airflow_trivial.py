"""Airflow's own ``dag.test()`` runs a DAG here, against a migrated metadata database."""

from __future__ import annotations

from pathlib import Path

import pytest

from klinestream.airflow_dags import load_dag
from tests.conftest import TEST_DAGS

pytestmark = pytest.mark.integration


def test_dag_test_runs_the_task_and_records_success(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "marker.txt"
    monkeypatch.setenv("KLINESTREAM_TEST_OUT", str(out))
    dag = load_dag("trivial_roundtrip", TEST_DAGS)

    dag_run = dag.test()

    assert dag_run.state == "success"
    # the task really ran, in this process tree, with the run's own id
    assert out.read_text() == dag_run.run_id
