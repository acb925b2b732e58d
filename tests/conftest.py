"""Shared pytest set-up.

Airflow reads its configuration when it is first imported, so the isolated ``AIRFLOW_HOME`` for the
test session is chosen in :func:`pytest_configure`, before any test module is imported. The database
is migrated lazily, by the ``airflow_home`` fixture, only in sessions that run a DAG.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_KLINES = REPO_ROOT.parent / "shared" / "data" / "binance_spot_1h"

TEST_DAGS = Path(__file__).resolve().parent / "airflow_dags"
_LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"

_AIRFLOW_HOME: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _AIRFLOW_HOME
    _AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="klinestream-airflow-"))
    os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
    # dag.test() runs DAGs found in a bundle: the project's dags/ and the test-only DAGs beside the tests
    bundles = [
        {"name": "dags-folder", "classpath": _LOCAL_BUNDLE, "kwargs": {"path": str(REPO_ROOT / "dags")}},
        {"name": "test-dags", "classpath": _LOCAL_BUNDLE, "kwargs": {"path": str(TEST_DAGS)}},
    ]
    os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(bundles)
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _AIRFLOW_HOME is not None:
        shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_home() -> Iterator[Path]:
    """An isolated, migrated Airflow metadata database for ``dag.test()`` (one per test session)."""
    assert _AIRFLOW_HOME is not None
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    yield _AIRFLOW_HOME


@pytest.fixture(scope="session")
def shared_klines_dir() -> Path:
    """The real Binance klines in ../shared/data (CI has them); skip with a reason when absent."""
    if not (SHARED_KLINES / "BTCUSDT.csv").exists():
        pytest.skip(f"real klines not found at {SHARED_KLINES}")
    return SHARED_KLINES
