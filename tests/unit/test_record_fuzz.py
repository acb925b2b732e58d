"""Property tests of the parse-and-validate path: thousands of generated records — random bytes, JSON nested
thousands deep, numbers of thousands of digits, NaN and infinities, odd encodings and byte-order marks, strings
for numbers, extra, missing and repeated fields, null and foreign keys, forged signatures — and no exception
escapes: each record is either accepted as a kline that satisfies the contract, or dead-lettered with a reason
code from REASON_CODES, in a DLQ copy of bounded size. The same holds for whole micro-batches."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.kafka import DlqRecord
from models.kline import HOUR_MS, check_kline
from models.kline_record import implausible
from models.signing import KlineSigner
from streaming.batch_state import BatchStateStore
from streaming.dlq import DLQ_REASON_LIMIT, DLQ_VALUE_LIMIT, REASON_CODES, AcceptanceRules, Accepted, RawRecord, judge
from streaming.micro_batch import AlignerConfig, MicroBatchProcessor
from tests.streaming_fakes import SYMBOLS, T0, ListDlq, RecordingTrader, kline

SIGNER = KlineSigner(b"fuzzing-signing-key-0123")
FUZZ = settings(max_examples=2500, deadline=None, database=None, suppress_health_check=list(HealthCheck))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-(10**3000), max_value=10**3000),  # thousands of digits
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),  # json.dumps: NaN, Infinity
    st.text(max_size=30),
    st.sampled_from(["101.5", "1e308", "-0", "0x10", "", "BTCUSDT", "btcusdt", "1h", "NaN"]),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=3000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    middle = draw(st.sampled_from(["", "1", '"x"', "null"])) if opener == "[" else "1"
    return (opener * depth + middle + closer * depth).encode()


@st.composite
def mutated_klines(draw: st.DrawFn) -> dict[str, Any]:
    """A real kline's payload, then a few fields changed, dropped or added."""
    symbol = draw(st.sampled_from(SYMBOLS))
    payload: dict[str, Any] = json.loads(kline(symbol, draw(st.integers(0, 500))).to_json("test"))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*payload, "x", "extra", "ignore", "E"]))
        action = draw(st.sampled_from(["replace", "drop", "stringify", "extreme"]))
        if action == "drop":
            payload.pop(name, None)
        elif action == "stringify" and isinstance(payload.get(name), (int, float)):
            payload[name] = str(payload[name])
        elif action == "extreme":
            payload[name] = draw(st.sampled_from([-1, 0, -1.5, 1e-300, 1e9, 1e300, 10**400, -(10**20), 2**63]))
        else:
            payload[name] = draw(json_values)
    return payload


@st.composite
def encodings(draw: st.DrawFn, payload: Any) -> bytes:
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    codec = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1"]))
    try:
        data = text.encode(codec)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    if draw(st.integers(0, 9)) == 0:  # a repeated field
        data = data.replace(b'"close"', b'"close": 1, "close"', 1)
    return data


@st.composite
def raw_records(draw: st.DrawFn, offset: int = 0) -> RawRecord:
    kind = draw(st.sampled_from(["kline", "kline", "kline", "bytes", "nested", "json"]))
    key = draw(st.one_of(st.none(), st.sampled_from([s.encode() for s in SYMBOLS]), st.binary(max_size=20)))
    if kind == "kline":
        payload = draw(mutated_klines())
        value = draw(encodings(payload))
        if draw(st.integers(0, 3)) > 0:  # mostly keyed like the ingestor keys it
            key = str(payload.get("symbol")).encode()
    elif kind == "bytes":
        value = draw(st.binary(max_size=300))
    elif kind == "nested":
        value = draw(deep_nesting())
    else:
        value = draw(encodings(draw(json_values)))
    headers: tuple[tuple[str, bytes | None], ...] = ()
    signing = draw(st.sampled_from(["none", "good", "good", "forged", "junk"]))
    if signing == "good":
        headers = tuple(SIGNER.headers(key, value))
    elif signing == "forged":
        headers = tuple(KlineSigner(b"a-forger-s-own-key-123").headers(key, value))
    elif signing == "junk":
        headers = (("klinestream.sig", draw(st.one_of(st.none(), st.binary(max_size=80)))),)
    timestamp = draw(st.sampled_from([0, T0 + 500 * HOUR_MS, T0 + 3 * HOUR_MS, T0 - 10**9]))
    return RawRecord("klines.1h", 0, offset, key, value, timestamp, headers)


def rules_for(draw_signer: bool, max_bytes: int) -> AcceptanceRules:
    return AcceptanceRules(frozenset(SYMBOLS), max_bytes, SIGNER if draw_signer else None,
                           {"BTCUSDT": ("count", "taker_buy_volume")}, None)  # fmt: skip


def assert_judged(record: RawRecord, outcome: Accepted | DlqRecord) -> None:
    event("accepted" if isinstance(outcome, Accepted) else outcome.reason.split(":", 1)[0])
    if isinstance(outcome, Accepted):
        k = outcome.kline
        assert k.symbol in SYMBOLS and record.key == k.symbol.encode()
        assert check_kline(k) == [] and implausible(k) is None
        assert k.symbol != "BTCUSDT" or (k.count is not None and k.taker_buy_volume is not None)
        return
    code = outcome.reason.split(":", 1)[0]
    assert code in REASON_CODES and code != "unparseable", outcome.reason  # unparseable = a bug of ours
    assert len(outcome.reason) <= DLQ_REASON_LIMIT
    assert len(outcome.value or b"") <= DLQ_VALUE_LIMIT
    assert (outcome.topic, outcome.partition, outcome.offset) == (record.topic, record.partition, record.offset)


@FUZZ
@given(record=raw_records(), signed=st.booleans(), max_bytes=st.sampled_from([4096, 1_000_000]))
def test_judging_any_record_never_raises_and_every_rejection_has_a_known_reason(
    record: RawRecord, signed: bool, max_bytes: int
) -> None:
    assert_judged(record, judge(record, rules_for(signed, max_bytes)))


@FUZZ
@given(payload=mutated_klines())
def test_an_accepted_record_is_exactly_what_the_contract_writes(payload: dict[str, Any]) -> None:
    value = json.dumps(payload).encode()
    record = RawRecord("klines.1h", 0, 0, str(payload.get("symbol")).encode(), value)
    outcome = judge(record, rules_for(False, 4096))
    assert_judged(record, outcome)
    if isinstance(outcome, Accepted):
        k = outcome.kline
        assert all(payload.get(name) == getattr(k, name) for name in k.to_dict()), (payload, k)
        assert set(payload) <= {*k.to_dict(), "schema_version", "source", "x"} and payload.get("x", True) is True
        again = judge(RawRecord("klines.1h", 0, 1, k.symbol.encode(), k.to_json("again")), rules_for(False, 4096))
        assert isinstance(again, Accepted) and again.kline == k


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), sizes=st.lists(st.integers(min_value=1, max_value=25), min_size=1, max_size=4))
def test_micro_batches_of_any_records_never_raise_and_lose_nothing(data: st.DataObject, sizes: list[int]) -> None:
    dlq, trader = ListDlq(), RecordingTrader()
    with tempfile.TemporaryDirectory() as folder:
        config = AlignerConfig(SYMBOLS, "BTCUSDT", timeout_hours=1, signer=SIGNER)
        processor = MicroBatchProcessor(config, trader, dlq, BatchStateStore(Path(folder)))
        offset = 0
        for batch_id, size in enumerate(sizes):
            records = [data.draw(raw_records(offset + i)) for i in range(size)]
            offset += size
            assert processor.process(batch_id, records).records == size
        held = len((processor.state.load_before(len(sizes)) or {}).get("pending", []))
    assert all(r.reason.split(":", 1)[0] in REASON_CODES for r in dlq.records)
    assert len({r.offset for r in dlq.records}) == len(dlq.records)  # each record dead-lettered once at most
    assert len(dlq.records) + len(trader.klines()) + held == offset  # every record is somewhere
