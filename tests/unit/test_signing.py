"""Signed klines: every publisher's records verify with the shared key, anything else does not, and the key
stays secret (settings refuse a short one and never echo it)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.kafka import KafkaKlineSink
from models.errors import SettingsError
from models.settings import load_settings
from models.signing import SIGNATURE_HEADER, KlineSigner
from tests.streaming_fakes import kline

KEY = "a-signing-key-of-enough-bytes"


class RecordingProducer:
    """Stands in for KafkaProducer.send/flush (unit test only)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, topic: str, **record: Any) -> Any:
        self.sent.append({"topic": topic, **record})
        return _Done()

    def flush(self) -> None:
        pass


class _Done:
    def get(self, timeout: float) -> None:
        return None


def test_the_ingestor_sink_signs_each_record_and_the_stream_side_verifies_it() -> None:
    signer = load_settings(kline_signing_key=KEY).kline_signer()
    assert signer is not None
    producer = RecordingProducer()
    sink = KafkaKlineSink(producer, "klines.1h", signer)
    sink.publish(kline("BTCUSDT", 0), "binance-ws")
    sink.flush()
    (sent,) = producer.sent
    assert sent["key"] == b"BTCUSDT" and [name for name, _ in sent["headers"]] == [SIGNATURE_HEADER]
    assert signer.verify(sent["key"], sent["value"], sent["headers"]) is None
    assert signer.verify(sent["key"], sent["value"] + b" ", sent["headers"]) == "bad_signature"
    assert KlineSigner(b"another-key-16-bytes!").verify(sent["key"], sent["value"], sent["headers"]) == "bad_signature"


def test_without_a_key_records_are_published_unsigned() -> None:
    producer = RecordingProducer()
    KafkaKlineSink(producer, "klines.1h").publish(kline("BTCUSDT", 0), "binance-ws")
    assert producer.sent[0]["headers"] is None
    assert load_settings().kline_signer() is None


def test_the_key_is_secret_and_long_enough() -> None:
    settings = load_settings(kline_signing_key=KEY)
    assert KEY not in repr(settings) and KEY not in repr(settings.kline_signer())
    with pytest.raises(SettingsError, match="KLINESTREAM_KLINE_SIGNING_KEY") as error:
        load_settings(kline_signing_key="short-secret")
    assert "short-secret" not in str(error.value)
    with pytest.raises(ValueError):
        KlineSigner(b"short")


def test_a_null_key_and_an_empty_key_sign_differently() -> None:
    signer = KlineSigner(KEY.encode())
    assert signer.signature(None, b"v") != signer.signature(b"", b"v")
    assert signer.signature(b"AB", b"Cv") != signer.signature(b"ABC", b"v")  # the key is length-prefixed
