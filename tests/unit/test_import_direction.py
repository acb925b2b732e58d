"""The import direction of shared/DESIGN.md §3, checked on the source (dags → pipelines → models,
streaming → models; models imports no infrastructure)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "models": {
        "airflow",
        "pyspark",
        "kafka",
        "cassandra",
        "great_expectations",
        "pipelines",
        "streaming",
        "klinestream",
        "dags",
    },
    "pipelines": {"airflow", "pyspark", "streaming", "klinestream", "dags"},
    "streaming": {"airflow", "pipelines", "klinestream", "dags", "great_expectations"},
    # the exchange simulator is a development tool and test double beside pipelines/ and streaming/
    "simulator": {"airflow", "pyspark", "pipelines", "streaming", "klinestream", "dags"},
}
#: Transitional: the simulator reads kline files and the lake through pipelines/ until issue 11's adapters
#: branch moves those readers to adapters/ (delete this entry at that merge).
ALLOWED_FOR_NOW = {"simulator/store.py": {"pipelines"}}
#: Only the Spark entry modules of streaming/ may import pyspark.
PYSPARK_ALLOWED = ("spark_job", "spark_session", "spark_")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_direction(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imports(path) & FORBIDDEN[package] - ALLOWED_FOR_NOW.get(str(path.relative_to(ROOT)), set())
        if bad:
            offenders.append(f"{path.relative_to(ROOT)}: {sorted(bad)}")
    assert not offenders, "forbidden imports:\n" + "\n".join(offenders)


def test_only_the_spark_entry_modules_of_streaming_import_pyspark() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "streaming").rglob("*.py"))
        if "pyspark" in _imports(path) and not path.stem.startswith(PYSPARK_ALLOWED)
    ]
    assert not offenders, f"pyspark imported outside the Spark entry modules: {offenders}"


def test_the_checker_sees_imports() -> None:
    """Guard against a checker that passes because it parses nothing."""
    assert "pydantic" in _imports(ROOT / "models" / "settings.py")
