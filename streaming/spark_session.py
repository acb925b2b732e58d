"""One way to build a local SparkSession that can read and write Kafka.

Spark runs in local mode with a small driver; Kafka support comes from the connector jars that
``klinestream stack install`` resolved into ``<home>/jvm/spark-kafka`` and that are handed to Spark through
``spark.jars`` (``spark.jars.packages`` would try the network at every start). pyspark is imported inside
the function so that importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import ServiceError
from models.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Settings every session gets; ``build_spark_session(..., **conf)`` overrides any of them.
DEFAULT_CONF: dict[str, str] = {
    "spark.driver.memory": "1g",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
    # the stream's micro-batches are small, collected to the driver, with no shuffle: adaptive planning
    # and locality waits only add latency to each of them
    "spark.sql.adaptive.enabled": "false",
    "spark.locality.wait": "0",
    # Spark's default pattern plus "jaas": the Kafka source's kafka.sasl.jaas.config holds a password
    "spark.redaction.regex": "(?i)secret|password|token|access[.]?key|jaas",
}

CONNECTOR_PREFIX = "spark-sql-kafka-0-10_"


def kafka_connector_jars(settings: Settings) -> list[Path]:
    """The Kafka connector jars (connector, token provider, kafka-clients, commons-pool2), sorted.

    Raises ServiceError naming ``klinestream stack install`` when they are missing.
    """
    folder = settings.jvm_dir / "spark-kafka"
    jars = sorted(folder.glob("*.jar"))
    if not any(jar.name.startswith(CONNECTOR_PREFIX) for jar in jars):
        raise ServiceError(
            f"Spark's Kafka connector is not installed in {folder}: run `klinestream stack install` "
            f"(it resolves the jars from Maven Central once)"
        )
    return jars


def spark_conf(settings: Settings, app_name: str, **conf: Any) -> dict[str, str]:
    """The full configuration :func:`build_spark_session` applies (defaults, connector jars, overrides).

    Keyword names use underscores for dots: ``spark_sql_shuffle_partitions=4`` sets
    ``spark.sql.shuffle.partitions``; names that already contain dots can be passed with ``**{...}``.
    """
    merged = dict(DEFAULT_CONF)
    merged["spark.app.name"] = app_name
    merged["spark.jars"] = ",".join(str(jar) for jar in kafka_connector_jars(settings))
    merged["spark.local.dir"] = str(settings.home / "spark" / "tmp")
    merged["spark.sql.warehouse.dir"] = str(settings.home / "spark" / "warehouse")
    for key, value in conf.items():
        name = key if "." in key else key.replace("_", ".")
        merged[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return merged


def build_spark_session(settings: Settings, app_name: str, master: str = "local[2]", **conf: Any) -> SparkSession:
    """A local SparkSession (``local[2]``, 1 GB driver, UI off, 2 shuffle partitions) with Kafka support."""
    from pyspark.sql import SparkSession

    full = spark_conf(settings, app_name, **conf)
    Path(full["spark.local.dir"]).mkdir(parents=True, exist_ok=True)
    # the driver JVM starts with the first session: its host must be known before any executor binds
    os.environ.setdefault("SPARK_LOCAL_IP", full["spark.driver.bindAddress"])
    builder = SparkSession.builder.master(master)
    for key, value in full.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    # a short processing-time trigger is shorter than most micro-batches, which this logger warns about at
    # every batch: an expected state for a low-latency stream, not a problem
    jvm = session.sparkContext._jvm
    assert jvm is not None
    executor = "org.apache.spark.sql.execution.streaming.runtime.ProcessingTimeExecutor"
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(executor, jvm.org.apache.logging.log4j.Level.ERROR)
    log.info("spark session app=%s master=%s jars=%d", app_name, master, len(full["spark.jars"].split(",")))
    return session


def stop_spark(session: SparkSession, timeout: float = 30.0) -> None:
    """Stop ``session`` and its driver JVM, and wait until the JVM has exited.

    pyspark's JVM exits when its stdin reaches end of file, i.e. only once the Python process is gone, so a
    stopped command would leave it running for a while (or for good, when its parent is killed). Closing
    that pipe here ends it now; a JVM that does not follow within ``timeout`` seconds is killed.
    """
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    session.stop()
    process = getattr(gateway, "proc", None) if gateway is not None else None
    if gateway is not None:
        gateway.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None
    if process is None:
        return
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("spark driver JVM pid=%d did not exit within %.0f s: killed", process.pid, timeout)
        process.kill()
        process.wait()
