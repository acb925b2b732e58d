"""``klinestream stack install``: resolve the JVM services' jars from Maven Central.

Each bundle is a small pom in ``klinestream/stack/jvm/`` whose dependencies ``mvn dependency:copy-dependencies``
copies into ``<home>/jvm/<bundle>``. A stamp file beside the jars holds a hash of everything that decides
the result (pom, Maven settings, versions); an install whose stamp matches does nothing, so a second run
costs no Maven call.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path

from klinestream.stack.process import exclusive_lock
from models.errors import ServiceError

log = logging.getLogger(__name__)

POM_DIR = Path(__file__).resolve().parent / "jvm"
MAVEN_SETTINGS = POM_DIR / "maven-settings.xml"
STAMP = ".klinestream-stamp"

BUNDLES = ("kafka", "cassandra", "spark-kafka")

SPARK_GROUP = "org.apache.spark"
CONNECTOR = "spark-sql-kafka-0-10_2.13"
TOKEN_PROVIDER = "spark-token-provider-kafka-0-10_2.13"

#: Spark releases can reach PyPI before Maven Central: as seen from here (2026-11) Central has no Spark 4.3.0
#: artifacts, and spark-token-provider-kafka-0-10 stops at 4.0.0. When the artifact at exactly the pyspark
#: version is missing, the first of these that Central has is used and ``stack install`` says so.
#: tests/integration/test_spark_kafka.py proves the combination works with the installed pyspark.
CONNECTOR_FALLBACKS = ("4.2.0", "4.1.1", "4.0.1")
TOKEN_PROVIDER_FALLBACKS = ("4.0.0",)


@dataclass(frozen=True)
class InstallResult:
    """What ``install`` did for one bundle."""

    bundle: str
    action: str  # "resolved" | "up to date"
    jars: int
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)


def pyspark_version() -> str:
    """The installed pyspark release, e.g. ``4.3.0``."""
    return package_version("pyspark")


def bundle_digest(bundle: str, extra: Sequence[str] = ()) -> str:
    """Hash of the inputs that decide a bundle's jars: its pom, the Maven settings and ``extra`` strings."""
    digest = hashlib.sha256()
    for path in (POM_DIR / f"{bundle}.pom.xml", MAVEN_SETTINGS):
        digest.update(path.read_bytes())
    for item in extra:
        digest.update(b"\0" + item.encode())
    return digest.hexdigest()


def is_up_to_date(target: Path, digest: str) -> bool:
    """True when ``target`` holds jars stamped with ``digest`` (so resolving again would change nothing)."""
    stamp = target / STAMP
    return stamp.is_file() and stamp.read_text().strip() == digest and any(target.glob("*.jar"))


def install(jvm_dir: Path, bundles: Sequence[str] = BUNDLES, force: bool = False) -> list[InstallResult]:
    """Resolve the jars of ``bundles`` into ``jvm_dir/<bundle>``; skip those already up to date."""
    unknown = [b for b in bundles if b not in BUNDLES]
    if unknown:
        raise ServiceError(f"unknown JVM bundle(s) {unknown}; choose from {list(BUNDLES)}")
    _require_tool("mvn", "install Maven (apt-get install maven)")
    _require_tool("java", "install a Java 17 runtime (apt-get install openjdk-17-jre-headless)")
    jvm_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(jvm_dir / ".install.lock"):
        return [_install_bundle(jvm_dir / name, name, force) for name in bundles]


def _install_bundle(target: Path, bundle: str, force: bool) -> InstallResult:
    extra = (pyspark_version(), *CONNECTOR_FALLBACKS, *TOKEN_PROVIDER_FALLBACKS) if bundle == "spark-kafka" else ()
    digest = bundle_digest(bundle, extra)
    if not force and is_up_to_date(target, digest):
        return InstallResult(bundle, "up to date", len(list(target.glob("*.jar"))), 0.0)
    started = time.monotonic()
    properties, notes = _spark_properties() if bundle == "spark-kafka" else ({}, [])
    staging = target.with_name(target.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    _mvn(
        ["-f", str(POM_DIR / f"{bundle}.pom.xml"), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
        + [f"-D{key}={value}" for key, value in properties.items()],
        what=f"resolving the {bundle} jars",
    )
    (staging / STAMP).write_text(digest + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    jars = len(list(target.glob("*.jar")))
    log.info("resolved bundle=%s jars=%d into %s", bundle, jars, target)
    return InstallResult(bundle, "resolved", jars, time.monotonic() - started, tuple(notes))


def _spark_properties() -> tuple[dict[str, str], list[str]]:
    wanted = pyspark_version()
    connector = _first_published(CONNECTOR, [wanted, *CONNECTOR_FALLBACKS])
    token = _first_published(TOKEN_PROVIDER, [connector, *TOKEN_PROVIDER_FALLBACKS])
    notes = [f"pyspark {wanted}: {CONNECTOR} {connector}, {TOKEN_PROVIDER} {token}"]
    if connector != wanted:
        notes.append(f"{CONNECTOR} {wanted} is not on Maven Central; using {connector} (newest published fallback)")
    return {"spark.kafka.version": connector, "spark.token.version": token}, notes


def _first_published(artifact: str, candidates: Sequence[str]) -> str:
    tried = []
    for candidate in dict.fromkeys(candidates):
        tried.append(candidate)
        if _published(f"{SPARK_GROUP}:{artifact}:{candidate}"):
            return candidate
    raise ServiceError(f"none of {artifact} {tried} could be resolved from Maven Central; check the network")


def _published(coordinates: str) -> bool:
    """True when Maven can fetch the jar ``group:artifact:version`` (without its dependencies)."""
    result = _run_mvn(["dependency:get", f"-Dartifact={coordinates}", "-Dtransitive=false"])
    if result.returncode != 0:
        log.info("not available from Maven Central: %s", coordinates)
    return result.returncode == 0


def _mvn(args: list[str], what: str) -> None:
    result = _run_mvn(args)
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
        reason = lines[0] if lines else f"mvn exited with {result.returncode}"
        raise ServiceError(f"Maven failed {what}: {reason.strip()} (rerun `klinestream stack install -v`)")


def _run_mvn(args: list[str]) -> subprocess.CompletedProcess[str]:
    command = ["mvn", "-q", "-B", "-s", str(MAVEN_SETTINGS), *args]
    log.debug("running %s", " ".join(command))
    return subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)


def _require_tool(name: str, how: str) -> None:
    if shutil.which(name) is None:
        raise ServiceError(f"`{name}` is not on PATH: {how}, then rerun `klinestream stack install`")


def jars(jvm_dir: Path, bundle: str) -> list[Path]:
    """The installed jars of ``bundle`` (sorted); empty when ``stack install`` has not run."""
    return sorted((jvm_dir / bundle).glob("*.jar"))


def require_jars(jvm_dir: Path, bundle: str) -> list[Path]:
    """The installed jars of ``bundle``, or a ServiceError saying to run ``klinestream stack install``."""
    found = jars(jvm_dir, bundle)
    if not found:
        raise ServiceError(f"no {bundle} jars in {jvm_dir / bundle}: run `klinestream stack install` first")
    return found
