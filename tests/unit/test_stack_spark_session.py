"""The Spark session's configuration: local connector jars, small defaults, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import ServiceError
from models.settings import load_settings
from streaming.spark_session import spark_conf


def test_missing_connector_jars_name_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="klinestream stack install"):
        spark_conf(load_settings(home=tmp_path), "app")


def test_conf_uses_the_local_jars_and_applies_overrides(tmp_path: Path) -> None:
    folder = tmp_path / "jvm" / "spark-kafka"
    folder.mkdir(parents=True)
    for name in ("spark-sql-kafka-0-10_2.13-4.2.0.jar", "kafka-clients-3.9.2.jar"):
        (folder / name).write_bytes(b"")

    conf = spark_conf(load_settings(home=tmp_path), "app", spark_sql_shuffle_partitions=4, **{"spark.foo_bar": True})

    assert conf["spark.jars"].split(",") == [
        str(folder / "kafka-clients-3.9.2.jar"),
        str(folder / "spark-sql-kafka-0-10_2.13-4.2.0.jar"),
    ]
    assert "spark.jars.packages" not in conf
    assert conf["spark.app.name"] == "app"
    assert conf["spark.sql.shuffle.partitions"] == "4"
    assert conf["spark.foo_bar"] == "true"
    assert conf["spark.ui.enabled"] == "false"
