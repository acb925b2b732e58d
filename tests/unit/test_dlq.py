"""Each hostile kind of record gets its own DLQ reason; good records pass untouched; a DLQ copy stays small."""

from __future__ import annotations

import hashlib
import json

import pytest

from adapters.kafka import DlqRecord
from models.kline import HOUR_MS
from models.signing import SIGNATURE_HEADER, KlineSigner
from streaming.dlq import (
    DLQ_VALUE_LIMIT,
    REASON_CODES,
    AcceptanceRules,
    Accepted,
    RawRecord,
    classify,
    judge,
)
from tests.streaming_fakes import SYMBOLS, T0, kline

RULES = AcceptanceRules(frozenset(SYMBOLS))
SIGNER = KlineSigner(b"0123456789abcdef-test-key")


def record(value: bytes | None, key: bytes | None = b"BTCUSDT", offset: int = 0, **extra: object) -> RawRecord:
    return RawRecord("klines.1h", 0, offset, key, value, **extra)  # type: ignore[arg-type]


def good_payload(**changes: object) -> dict[str, object]:
    payload = json.loads(kline("BTCUSDT", 0).to_json("test"))
    payload.update(changes)
    return payload


def encode(payload: object) -> bytes:
    return json.dumps(payload).encode()


def code_of(outcome: Accepted | DlqRecord) -> str:
    assert isinstance(outcome, DlqRecord), f"accepted: {outcome}"
    return outcome.reason.split(":")[0]


HOSTILE: dict[str, bytes | None] = {
    "empty": b"",
    "oversized": encode(good_payload(source="x" * 10_000)),
    "not_json": b"{not json at all",
    "encoding": b"\x00\xffnot utf-8",
    "not_object": b"[1, 2, 3]",
    "schema_version": encode(good_payload(schema_version=99)),
    "missing_field": encode({k: v for k, v in good_payload().items() if k != "close"}),
    "wrong_type": encode(good_payload(open_time="yesterday")),
    "invalid_kline": encode(good_payload(open=-5.0, low=-6.0)),
    "unknown_symbol": encode(good_payload(symbol="DOGEUSDT")),
    "unknown_interval": encode(good_payload(interval="1m")),
    "unknown_field": encode(good_payload(extra=1)),
    "not_closed": encode(good_payload(x=False)),
    "implausible": encode(good_payload(volume=1e308 * 10)).replace(b"Infinity", b"1e999"),
    "duplicate_field": b'{"close": 1.0, ' + encode(good_payload())[1:],
}


@pytest.mark.parametrize("code", sorted(HOSTILE))
def test_each_hostile_kind_is_rejected_with_its_reason_and_original_bytes(code: str) -> None:
    raw = record(HOSTILE[code], key=b"DOGEUSDT" if code == "unknown_symbol" else b"BTCUSDT")
    outcome = judge(raw, RULES)
    assert code_of(outcome) == code
    assert isinstance(outcome, DlqRecord) and outcome.value == HOSTILE[code]
    assert outcome.dlq_key == b"klines.1h/0/0"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"close": "101.0"}, "wrong_type"),  # a string for a number
        ({"open_time": float(T0)}, "wrong_type"),  # a float where the contract has an integer
        ({"count": 7.5}, "wrong_type"),
        ({"count": True}, "wrong_type"),
        ({"schema_version": True}, "schema_version"),  # True == 1 in Python, not in the contract
        ({"x": "true"}, "not_closed"),
        ({"x": None}, "not_closed"),
        ({"count": -100}, "invalid_kline"),
        ({"taker_buy_volume": -1.0}, "invalid_kline"),
        ({"close_time": T0 + 13 * 24 * HOUR_MS}, "invalid_kline"),  # closes days after it opened
        ({"volume": 1e300}, "implausible"),
        ({"close": 2e9, "high": 2e9}, "implausible"),
        ({"open_time": 10**30}, "implausible"),
        ({"symbol": "btcusdt"}, "unknown_symbol"),  # the symbol exactly as configured
        ({"symbol": ["BTCUSDT"]}, "wrong_type"),
        ({"source": None}, "missing_field"),
    ],
)
def test_non_canonical_or_implausible_values_are_refused(change: dict[str, object], code: str) -> None:
    assert code_of(judge(record(encode(good_payload(**change))), RULES)) == code


def test_a_closed_flag_that_is_true_is_accepted() -> None:
    assert isinstance(judge(record(encode(good_payload(x=True))), RULES), Accepted)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"\xef\xbb\xbf" + kline("BTCUSDT", 0).to_json("t"), "encoding"),  # a byte-order mark
        (kline("BTCUSDT", 0).to_json("t").decode().encode("utf-16"), "encoding"),
        (b"[" * 2000 + b"]" * 2000, "not_json"),  # deeper than the parser recurses
        (b'{"a":' * 1500 + b"1" + b"}" * 1500, "not_json"),
        (b'{"open": NaN}', "not_json"),
        (b"1" * 5000, "not_json"),  # more digits than Python converts
        (encode(good_payload(volume=0)).replace(b'"volume": 0', b'"volume": ' + b"9" * 4000), "implausible"),
    ],
)
def test_poison_pills_are_rejected_not_raised(value: bytes, code: str) -> None:
    assert code_of(judge(record(value), AcceptanceRules(frozenset(SYMBOLS), max_bytes=10_000))) == code


def test_a_null_key_and_a_key_of_another_symbol_are_refused() -> None:
    value = kline("BTCUSDT", 0).to_json("t")
    assert code_of(judge(record(value, key=None), RULES)) == "missing_key"
    assert code_of(judge(record(value, key=b"ETHUSDT"), RULES)) == "key_mismatch"


def test_a_field_the_model_needs_must_be_present_for_that_symbol_only() -> None:
    rules = AcceptanceRules(frozenset(SYMBOLS), required={"BTCUSDT": ("count",)})
    without = kline("BTCUSDT", 0, count=None).to_json("t")
    assert code_of(judge(record(without), rules)) == "missing_feature"
    other = kline("ETHUSDT", 0, count=None).to_json("t")
    assert isinstance(judge(record(other, key=b"ETHUSDT"), rules), Accepted)


def test_a_kline_closing_after_it_was_written_is_from_the_future() -> None:
    k = kline("BTCUSDT", 0)
    written_after = record(k.to_json("t"), timestamp_ms=k.event_time + 1)
    assert isinstance(judge(written_after, RULES), Accepted)
    written_before = record(k.to_json("t"), timestamp_ms=k.event_time - 10 * 60_000)
    assert code_of(judge(written_before, RULES)) == "future"
    live = AcceptanceRules(frozenset(SYMBOLS), now_ms=k.event_time - 5 * 60_000)
    assert code_of(judge(record(k.to_json("t")), live)) == "future"  # the wall clock bounds it too, live


def test_signatures_are_verified_before_anything_is_parsed() -> None:
    rules = AcceptanceRules(frozenset(SYMBOLS), signer=SIGNER)
    value = kline("BTCUSDT", 0).to_json("t")
    signed = record(value, headers=tuple(SIGNER.headers(b"BTCUSDT", value)))
    assert isinstance(judge(signed, rules), Accepted)
    assert code_of(judge(record(value), rules)) == "unsigned"
    forged = KlineSigner(b"another-key-of-16-bytes").headers(b"BTCUSDT", value)
    assert code_of(judge(record(value, headers=tuple(forged)), rules)) == "bad_signature"
    moved = record(value, key=b"ETHUSDT", headers=tuple(SIGNER.headers(b"BTCUSDT", value)))
    assert code_of(judge(moved, rules)) == "bad_signature"  # the key is signed too
    twice = record(value, headers=(*SIGNER.headers(b"BTCUSDT", value), (SIGNATURE_HEADER, b"00")))
    assert code_of(judge(twice, rules)) == "bad_signature"


def test_a_dlq_copy_of_a_huge_record_is_cut_and_keeps_its_hash_and_size() -> None:
    value = b"x" * (1024 * 1024)
    outcome = judge(record(value), RULES)
    assert code_of(outcome) == "oversized" and isinstance(outcome, DlqRecord)
    assert outcome.value == value[:DLQ_VALUE_LIMIT]
    headers = dict(outcome.headers())
    assert headers["dlq.truncated"] == b"true"
    assert headers["dlq.size"] == str(len(value)).encode()
    assert headers["dlq.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["dlq.key"] == b"BTCUSDT" and headers["dlq.offset"] == b"0"
    assert sum(len(v) for v in headers.values()) + len(outcome.value or b"") < 70_000


def test_details_never_echo_a_whole_payload() -> None:
    outcome = judge(record(encode(good_payload(close="9" * 3000))), RULES)
    assert code_of(outcome) == "wrong_type" and isinstance(outcome, DlqRecord) and len(outcome.reason) < 200


def test_a_good_record_is_accepted_as_the_same_kline() -> None:
    k = kline("ETHUSDT", 3)
    outcome = judge(record(k.to_json("t"), key=b"ETHUSDT"), RULES)
    assert isinstance(outcome, Accepted) and outcome.kline == k


def test_classify_keeps_offset_order_and_splits() -> None:
    records = [
        record(kline("BTCUSDT", 1).to_json("t"), offset=5),
        record(b"junk", offset=2),
        record(kline("BTCUSDT", 0).to_json("t"), offset=1),
    ]
    accepted, rejected = classify(records, RULES)
    assert [a.record.offset for a in accepted] == [1, 5]
    assert [r.offset for r in rejected] == [2]


def test_an_unexpected_error_while_judging_dead_letters_that_record_only() -> None:
    class Exploding(KlineSigner):
        def verify(self, key: object, value: object, headers: object) -> str | None:
            raise MemoryError("no memory for this record")

    rules = AcceptanceRules(frozenset(SYMBOLS), signer=Exploding(b"0123456789abcdef"))
    outcome = judge(record(kline("BTCUSDT", 0).to_json("t")), rules)
    assert code_of(outcome) == "unparseable" and isinstance(outcome, DlqRecord) and "MemoryError" in outcome.reason


def test_unknown_reason_codes_are_refused() -> None:
    with pytest.raises(ValueError):
        record(b"x").reject("because", "no")
    assert {"duplicate", "conflict", "late", "future", "before_start", "batch_failed"} <= set(REASON_CODES)
    assert len(set(REASON_CODES)) == len(REASON_CODES)
