"""Each hostile kind of record gets its own DLQ reason; good records pass untouched."""

from __future__ import annotations

import json

import pytest

from streaming.dlq import REASON_CODES, Accepted, RawRecord, classify, judge
from tests.unit.streaming_fakes import SYMBOLS, kline

ALLOWED = frozenset(SYMBOLS)


def record(value: bytes | None, key: bytes | None = b"BTCUSDT", offset: int = 0) -> RawRecord:
    return RawRecord("klines.1h", 0, offset, key, value)


def good_payload(**changes: object) -> dict[str, object]:
    payload = json.loads(kline("BTCUSDT", 0).to_json("test"))
    payload.update(changes)
    return payload


def encode(payload: object) -> bytes:
    return json.dumps(payload).encode()


HOSTILE: dict[str, bytes | None] = {
    "empty": b"",
    "oversized": encode(good_payload(source="x" * 10_000)),
    "not_json": b"\x00\xffnot json at all",
    "not_object": b"[1, 2, 3]",
    "schema_version": encode(good_payload(schema_version=99)),
    "missing_field": encode({k: v for k, v in good_payload().items() if k != "close"}),
    "wrong_type": encode(good_payload(open_time="yesterday")),
    "invalid_kline": encode(good_payload(open=-5.0, low=-6.0)),
    "unknown_symbol": encode(good_payload(symbol="DOGEUSDT")),
    "unknown_interval": encode(good_payload(interval="1m")),
}


@pytest.mark.parametrize("code", sorted(HOSTILE))
def test_each_hostile_kind_is_rejected_with_its_reason_and_original_bytes(code: str) -> None:
    raw = record(HOSTILE[code], key=b"DOGEUSDT" if code == "unknown_symbol" else b"BTCUSDT")
    outcome = judge(raw, ALLOWED)
    assert not isinstance(outcome, Accepted)
    assert outcome.reason.split(":")[0] == code
    assert outcome.value == HOSTILE[code]
    assert outcome.dlq_key == b"klines.1h/0/0"


def test_a_record_keyed_by_another_symbol_is_rejected() -> None:
    outcome = judge(record(kline("BTCUSDT", 0).to_json("t"), key=b"ETHUSDT"), ALLOWED)
    assert not isinstance(outcome, Accepted) and outcome.reason.startswith("key_mismatch:")


def test_negative_prices_name_the_rule() -> None:
    outcome = judge(record(HOSTILE["invalid_kline"]), ALLOWED)
    assert not isinstance(outcome, Accepted) and "prices must be > 0" in outcome.reason


def test_a_good_record_is_accepted_as_the_same_kline() -> None:
    k = kline("ETHUSDT", 3)
    outcome = judge(record(k.to_json("t"), key=b"ETHUSDT"), ALLOWED)
    assert isinstance(outcome, Accepted) and outcome.kline == k


def test_classify_keeps_offset_order_and_splits() -> None:
    records = [
        record(kline("BTCUSDT", 1).to_json("t"), offset=5),
        record(b"junk", offset=2),
        record(kline("BTCUSDT", 0).to_json("t"), offset=1),
    ]
    accepted, rejected = classify(records, SYMBOLS)
    assert [a.record.offset for a in accepted] == [1, 5]
    assert [r.offset for r in rejected] == [2]


def test_unknown_reason_codes_are_refused() -> None:
    with pytest.raises(ValueError):
        record(b"x").reject("because", "no")
    assert "duplicate" in REASON_CODES and "late" in REASON_CODES
