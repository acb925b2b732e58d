"""The install step's stamp: what it hashes and when it lets ``stack install`` skip Maven."""

from __future__ import annotations

from pathlib import Path

import pytest

from klinestream.stack import jvm
from models.errors import ServiceError


def test_digest_depends_on_the_pom_and_the_versions() -> None:
    base = jvm.bundle_digest("spark-kafka", ["4.3.0"])
    assert base == jvm.bundle_digest("spark-kafka", ["4.3.0"])
    assert base != jvm.bundle_digest("spark-kafka", ["4.3.1"])
    assert base != jvm.bundle_digest("kafka", ["4.3.0"])


def test_a_folder_is_up_to_date_only_with_jars_and_the_same_stamp(tmp_path: Path) -> None:
    assert not jvm.is_up_to_date(tmp_path, "abc")
    (tmp_path / jvm.STAMP).write_text("abc\n")
    assert not jvm.is_up_to_date(tmp_path, "abc")  # a stamp without jars
    (tmp_path / "kafka-clients.jar").write_bytes(b"")
    assert jvm.is_up_to_date(tmp_path, "abc")
    assert not jvm.is_up_to_date(tmp_path, "def")


def test_install_skips_maven_when_the_stamp_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "kafka"
    target.mkdir()
    (target / "kafka_2.13.jar").write_bytes(b"")
    (target / jvm.STAMP).write_text(jvm.bundle_digest("kafka") + "\n")

    def no_maven(args: list[str]) -> None:
        raise AssertionError(f"mvn must not run, got {args}")

    monkeypatch.setattr(jvm, "_run_mvn", no_maven)
    [result] = jvm.install(tmp_path, ["kafka"])
    assert (result.bundle, result.action, result.jars) == ("kafka", "up to date", 1)


def test_an_unknown_bundle_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="choose from"):
        jvm.install(tmp_path, ["zookeeper"])


def test_missing_jars_name_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="klinestream stack install"):
        jvm.require_jars(tmp_path, "cassandra")
