"""Airflow's own ``dag.test()`` runs a DAG here, against a migrated metadata database."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import TEST_DAGS

pytestmark = pytest.mark.integration


def _load_dag(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def test_dag_test_runs_the_task_and_records_success(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "marker.txt"
    monkeypatch.setenv("KLINESTREAM_TEST_OUT", str(out))
    dag = _load_dag(TEST_DAGS / "trivial_roundtrip.py")

    dag_run = dag.test()

    assert dag_run.state == "success"
    # the task really ran, in this process tree, with the run's own id
    assert out.read_text() == dag_run.run_id
