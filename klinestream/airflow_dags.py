"""Loading the project's DAG files for ``dag.test()`` (the demo, the benchmarks and the tests).

The files in ``dags/`` are not a package (Airflow parses them by path), so they are imported from their file.
Airflow must be configured (``AIRFLOW_HOME`` and friends) before a DAG file is loaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from models.errors import KlinestreamError

DAGS_DIR = Path(__file__).resolve().parents[1] / "dags"


def load_dag(name: str, folder: Path = DAGS_DIR) -> Any:
    """The ``dag`` object of ``<folder>/<name>.py``."""
    path = folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"klinestream_dag_{name}", path)
    if spec is None or spec.loader is None:
        raise KlinestreamError(f"cannot import the DAG file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag
