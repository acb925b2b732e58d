"""The import direction of docs/architecture.md ("Import rules"), checked on the source:

    models  ←  adapters  ←  pipelines | streaming | simulator  ←  dags | klinestream

``models`` is the pure domain: no package above it and no library that talks to the outside world
(services, the network, the exchange, the lake's Parquet files). ``adapters`` is everything that does
talk to the outside, and imports only ``models``. The orchestration layers import both, never each
other, and never the entry points above them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Libraries that talk to a service, the network, the exchange or a storage format of the lake.
#: ``yaml``, ``json`` and ``torch``'s own save/load stay allowed in ``models``: they parse and write bytes the
#: domain owns (a policy folder, a checkpoint blob) and reach no service; ``requests`` is an HTTP client,
#: so it is forbidden there like every other client.
IO_LIBRARIES = frozenset(
    {
        "mlflow",
        "cassandra",
        "kafka",
        "pyspark",
        "airflow",
        "aiohttp",
        "requests",
        "websockets",
        "binance",
        "great_expectations",
        "pyarrow",
    }
)
ENTRY_POINTS = frozenset({"dags", "klinestream"})
ORCHESTRATION = frozenset({"pipelines", "streaming", "simulator"})

FORBIDDEN: dict[str, frozenset[str]] = {
    "models": IO_LIBRARIES | {"adapters"} | ORCHESTRATION | ENTRY_POINTS,
    "adapters": frozenset({"airflow", "pyspark"}) | ORCHESTRATION | ENTRY_POINTS,
    "pipelines": frozenset({"airflow", "pyspark", "streaming", "simulator"}) | ENTRY_POINTS,
    "streaming": frozenset({"airflow", "great_expectations", "mlflow", "cassandra", "kafka", "pipelines", "simulator"})
    | ENTRY_POINTS,
    "simulator": frozenset({"airflow", "pyspark", "pipelines", "streaming"}) | ENTRY_POINTS,
}
#: Only the Spark entry modules of streaming/ may import pyspark.
PYSPARK_ALLOWED = ("spark_job", "spark_session", "spark_")


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path`` (function bodies and TYPE_CHECKING blocks too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def offenders(package_dir: Path, forbidden: frozenset[str] | set[str]) -> list[str]:
    """``"<file>: [names]"`` for each module under ``package_dir`` that imports a forbidden name."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        bad = imported_packages(path) & forbidden
        if bad:
            found.append(f"{path.relative_to(package_dir.parent)}: {sorted(bad)}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_direction(package: str) -> None:
    bad = offenders(ROOT / package, FORBIDDEN[package])
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_only_the_spark_entry_modules_of_streaming_import_pyspark() -> None:
    bad = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "streaming").rglob("*.py"))
        if "pyspark" in imported_packages(path) and not path.stem.startswith(PYSPARK_ALLOWED)
    ]
    assert not bad, f"pyspark imported outside the Spark entry modules: {bad}"


def test_the_checker_sees_imports() -> None:
    """Guard against a checker that passes because it parses nothing."""
    assert "pydantic" in imported_packages(ROOT / "models" / "settings.py")
    assert {"mlflow", "models"} <= imported_packages(ROOT / "adapters" / "mlflow" / "registry.py")
    assert "pyspark" in imported_packages(ROOT / "streaming" / "spark_job.py")


@pytest.mark.parametrize(
    ("package", "planted"),
    [
        ("models", "import mlflow"),
        ("models", "from cassandra.cluster import Cluster"),
        ("models", "from adapters.kafka import build_producer"),
        ("adapters", "from pipelines.dataset import build_dataset"),
        ("adapters", "import pyspark.sql"),
        ("pipelines", "from airflow.sdk import DAG"),
        ("pipelines", "from streaming.online_trader import OnlineTrader"),
        ("streaming", "from pipelines import promotion"),
        ("streaming", "import great_expectations as gx"),
    ],
)
def test_a_planted_forbidden_import_is_caught(tmp_path: Path, package: str, planted: str) -> None:
    """The checker flags a forbidden import wherever it hides (here inside a function body)."""
    folder = tmp_path / package
    folder.mkdir()
    (folder / "clean.py").write_text("from __future__ import annotations\n\nimport math\n")
    (folder / "planted.py").write_text(f"def later() -> None:\n    {planted}\n")
    bad = offenders(folder, FORBIDDEN[package])
    assert bad == [f"{package}/planted.py: {[planted.split()[1].split('.')[0]]}"]


def test_relative_imports_and_allowed_libraries_pass(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "ok.py").write_text(
        "import json\nimport yaml\nimport torch\nfrom . import kline\nfrom models import kline\n"
    )
    assert offenders(folder, FORBIDDEN["models"]) == []
