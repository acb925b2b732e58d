"""The Spark job's pure parts: the value schema is generated from the Kline contract (not copied), and the
trader's checkpoint may not run ahead of Spark's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pyspark.sql import Row
from pyspark.sql.types import DoubleType, LongType, StringType

from models.errors import PermanentError
from models.kline import Kline
from models.settings import load_settings
from streaming.spark_job import (
    ENVELOPE,
    StreamOptions,
    _spark_field,
    check_checkpoint_pair,
    failure_reason,
    kline_value_schema,
    last_committed_batch,
    spark_disagrees,
)


def test_every_contract_field_and_the_envelope_are_in_the_schema_in_order() -> None:
    schema = kline_value_schema()
    assert schema.names == [f.name for f in dataclasses.fields(Kline)] + list(ENVELOPE)


def test_types_and_nullability_follow_the_type_hints() -> None:
    fields = {f.name: f for f in kline_value_schema().fields}
    assert fields["symbol"].dataType == StringType() and not fields["symbol"].nullable
    assert fields["open_time"].dataType == LongType() and not fields["open_time"].nullable
    assert fields["close"].dataType == DoubleType() and not fields["close"].nullable
    assert fields["close_time"].dataType == LongType() and fields["close_time"].nullable
    assert fields["count"].dataType == LongType() and fields["count"].nullable
    assert fields["taker_buy_volume"].dataType == DoubleType() and fields["taker_buy_volume"].nullable
    assert fields["schema_version"].dataType == LongType()


def test_an_unmappable_field_type_fails_loudly() -> None:
    with pytest.raises(TypeError, match="no Spark type"):
        _spark_field("when", bytes)
    with pytest.raises(TypeError, match="cannot map"):
        _spark_field("either", int | str)


class _Trader:
    def __init__(self, last_batch_id: int) -> None:
        self.last_batch_id = last_batch_id

    def process_batch(self, batch_id: int, klines: list[Kline], degraded: set[int] | None = None) -> None:
        return None


def _commit(root: Path, *batch_ids: int) -> None:
    commits = root / "spark" / "commits"
    commits.mkdir(parents=True, exist_ok=True)
    for batch_id in batch_ids:
        (commits / str(batch_id)).write_text("v1\n{}")
        (commits / f".{batch_id}.crc").write_bytes(b"")


def test_a_trader_one_batch_ahead_of_spark_may_start_more_may_not(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    options = StreamOptions(checkpoint_dir=tmp_path / "ckpt")
    _commit(tmp_path / "ckpt", 0, 1, 2)
    assert last_committed_batch(tmp_path / "ckpt" / "spark") == 2
    check_checkpoint_pair(settings, options, _Trader(3))  # processed, not yet committed by Spark: a replay
    with pytest.raises(PermanentError, match="reset both together"):
        check_checkpoint_pair(settings, StreamOptions(checkpoint_dir=tmp_path / "fresh"), _Trader(3))


def _spark_row(kline: Kline, **changes: object) -> Row:
    fields = {**kline.to_dict(), "schema_version": 1, "source": "t", **changes}
    return Row(**fields)


def test_spark_and_python_agree_on_a_good_record_and_disagreements_are_seen() -> None:
    k = Kline("BTCUSDT", "1h", 1_672_531_200_000, 1.0, 2.0, 0.5, 1.5, 3.0, 1_672_534_799_999)
    value = k.to_json("t")
    assert not spark_disagrees(_spark_row(k), value)
    assert spark_disagrees(_spark_row(k, close=1.25), value)
    assert spark_disagrees(None, value)  # Spark could not parse what Python accepts
    assert not spark_disagrees(None, b"not json")  # rejected by Python: the DLQ's business


def test_a_failed_query_is_reported_by_the_error_that_stopped_it() -> None:
    message = (
        "[FOREACH_BATCH_USER_FUNCTION_ERROR] An error occurred in the user provided function.\n"
        "py4j.Py4JException: An exception was raised by the Python Proxy. Return Message: Traceback:\n"
        '  File "streaming/micro_batch.py", line 90, in process\n'
        "models.errors.TemporaryError: writing 3 DLQ records to klines.dlq failed: KafkaTimeoutError\n"
        "\tat org.apache.spark.sql.execution.streaming.MicroBatchExecution.run(MicroBatchExecution.scala:1)"
    )
    assert failure_reason(message).startswith("models.errors.TemporaryError: writing 3 DLQ records")
    assert failure_reason("just one line") == "just one line"
