"""The Spark schema of a klines.1h value is generated from the Kline contract, not copied."""

from __future__ import annotations

import dataclasses

import pytest
from pyspark.sql.types import DoubleType, LongType, StringType

from models.kline import Kline
from streaming.spark_job import ENVELOPE, _spark_field, kline_value_schema


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
