"""No single record can stop or steer the stream, on real services (Kafka → Spark job → online trader →
Cassandra): each case publishes one bad record, then a week of real Binance klines of the five symbols
(../shared), and runs the job. In every case the job stays alive, the decisions equal those of a clean run
of the same week hour for hour, and the bad record is in the dead-letter topic with its reason.

The bad records: a JSON array nested 2,000 deep, a record of about 1 MiB (the broker takes it; its DLQ copy is
cut to a bounded prefix with the payload's hash), the traded symbol's kline with ``count: null`` and with
``count: -100`` (the policy's features use ``count``) published just before the real one, a valid kline 13
days ahead mid-stream, and a first record dated 2016 or 2030. With a signing key set, forged klines (a wrong
signature, none at all) published before the real one are refused and the real one is traded, and a
conflicting duplicate raises an alert carrying both versions.

One clean run is shared by every case; a policy with a 4-hour window keeps the week short."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import SecretStr

from models.credentials import KafkaPrincipal
from models.kline import HOUR_MS, Kline
from models.settings import Settings
from tests.integration.live_helpers import Consumed, live_topics, read_topic
from tests.integration.live_stream_helpers import LOOSE_LIMITS, TRADED, close_trader, fresh_keyspace, trader_rows
from tests.streaming_fakes import ListAlerts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMBOLS = ("BNBUSDT", "BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT")
WEEK = 1_654_473_600_000  # 2022-06-06 00:00 UTC, a Monday (not a test month)
HOURS = 7 * 24
WINDOW = 4
MIDDLE = WEEK + 84 * HOUR_MS  # the hour whose traded kline the mid-stream cases target
SIGNING_KEY = "integration-test-signing-key-0123"
#: columns of a decision that must be equal to the clean run's, hour for hour
COMPARED = ("action", "greedy_action", "q_hold", "q_buy", "q_sell", "price", "degraded", "tradable", "model_version")

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]


@dataclass
class World:
    spark: Any
    settings: Settings
    model_dir: Path
    week: list[Kline]
    later: dict[tuple[str, int], Kline]
    clean: dict[int, dict[str, Any]]
    work: Path


def small_policy(frame: Any, seed: int) -> Any:
    from models.config import AgentConfig, EnvConfig, config_to_dict
    from models.features import Normalizer, compute_feature_table, infer_spec
    from models.networks import build_network
    from models.policy import Policy

    spec = infer_spec(frame, SYMBOLS, TRADED, window=WINDOW)
    assert "log_count" in spec.optional[TRADED], "the cases with count need a policy whose features use it"
    normalizer = Normalizer.fit(compute_feature_table(frame, spec), spec)
    torch.manual_seed(seed)
    network = build_network("linear", spec.window, spec.n_features, spec.n_account)
    return Policy(spec, normalizer, AgentConfig(variant="linear"), network, {"env_config": config_to_dict(EnvConfig())})


def signed(settings: Settings, key: bytes | None, value: bytes) -> Record:
    signer = settings.kline_signer()
    return key, value, signer.headers(key, value) if signer is not None else None


def as_records(settings: Settings, klines: list[Kline]) -> list[Record]:
    return [signed(settings, k.symbol.encode(), k.to_json("binance-ws")) for k in klines]


def publish(settings: Settings, records: list[Record]) -> list[int]:
    """Publish ``records`` in order; returns their offsets (the producer allows the 1 MiB record)."""
    from adapters.kafka import build_producer

    producer = build_producer(settings, "test-poison", KafkaPrincipal.WRITER, max_request_size=2 * 1024 * 1024)
    try:
        futures = [producer.send(settings.kafka_topic_klines, key=k, value=v, headers=h) for k, v, h in records]
        producer.flush()
        return [f.get(timeout=60).offset for f in futures]
    finally:
        producer.close()


def run_job(world: World, settings: Settings, name: str, alerts: ListAlerts | None = None) -> dict[int, dict]:
    """Drain the topic with the Spark job and a Cassandra trader of its own; returns its decisions by hour."""
    from streaming.live_trader import start_live_trader
    from streaming.model_source import DirectoryModelSource
    from streaming.spark_job import StreamOptions, run_stream

    source = DirectoryModelSource({"1": world.model_dir}, "1")
    trader = start_live_trader(settings, source, online=False, trader_id=f"poison-{name}", alerts=alerts)
    try:
        options = StreamOptions(name=f"poison-{name}", available_now=True, max_offsets_per_trigger=250,
                                checkpoint_dir=world.work / name)  # fmt: skip
        outcomes: list[Any] = []
        run_stream(world.spark, settings, trader, options, on_outcome=outcomes.append, alerts=alerts)
        rows = trader_rows(trader, "decisions")
    finally:
        close_trader(trader)
    assert len(outcomes) >= 3, "expected several micro-batches"
    assert not any(o.set_aside for o in outcomes) and all(o.schema_disagreements == 0 for o in outcomes)
    return {row["open_time"]: row for row in rows}


def assert_same_decisions(world: World, decisions: dict[int, dict]) -> None:
    assert sorted(decisions) == sorted(world.clean), "the decided hours differ from the clean run's"
    differing = {h: {c: (decisions[h][c], row[c]) for c in COMPARED if decisions[h][c] != row[c]}
                 for h, row in world.clean.items()}  # fmt: skip
    differing = {h: d for h, d in differing.items() if d}
    assert not differing, f"decisions differ from the clean run at {len(differing)} hours: {differing}"


def dlq_by_offset(settings: Settings) -> dict[int, Consumed]:
    return {int(r.headers["dlq.offset"]): r for r in read_topic(settings, settings.kafka_topic_dlq)}


@pytest.fixture(scope="module")
def world(
    settings: Settings, stack: Any, spark: Any, shared_klines_dir: Path, tmp_path_factory: Any
) -> Iterator[World]:
    from adapters.kline_files import read_kline_dirs
    from tests.trader_fakes import to_klines

    stack.require("kafka", "cassandra", "spark")
    torch.set_num_threads(1)
    fitted = read_kline_dirs(shared_klines_dir, SYMBOLS, WEEK - 14 * 24 * HOUR_MS, WEEK)
    work = tmp_path_factory.mktemp("poison")
    model_dir = small_policy(fitted, seed=1).save(work / "models" / "1")
    week = sorted(to_klines(read_kline_dirs(shared_klines_dir, SYMBOLS, WEEK, WEEK + HOURS * HOUR_MS)),
                  key=lambda k: (k.open_time, k.symbol))  # fmt: skip
    later = to_klines(
        read_kline_dirs(shared_klines_dir, (TRADED,), MIDDLE + 13 * 24 * HOUR_MS, MIDDLE + 14 * 24 * HOUR_MS)
    )
    changes: dict[str, object] = {"symbols": SYMBOLS, "traded_symbol": TRADED, "fee_rate": 0.0, "slippage_bps": 0.0,
                                  **LOOSE_LIMITS}  # fmt: skip
    with fresh_keyspace(settings.model_copy(update=changes), "test_poison") as ours:
        w = World(spark, ours, model_dir, week, {(k.symbol, k.open_time): k for k in later}, {}, work)
        with live_topics(ours) as live:
            publish(live, as_records(live, week))
            w.clean = run_job(w, live, "clean")
        actions = {row["action"] for row in w.clean.values()}
        assert len(w.clean) > 100 and len(actions) > 1, f"a clean run that never trades makes this vacuous: {actions}"
        yield w


def payload(kline: Kline, **changes: object) -> bytes:
    data = json.loads(kline.to_json("binance-ws"))
    data.update(changes)
    return json.dumps(data, separators=(",", ":")).encode()


def shifted(kline: Kline, years: int) -> Kline:
    delta = round(years * 365.25 * 24) * HOUR_MS
    close_time = None if kline.close_time is None else kline.close_time + delta
    return replace(kline, open_time=kline.open_time + delta, close_time=close_time)


def bad_record(case: str, world: World) -> tuple[bytes | None, bytes, str]:
    """(key, value, position) of one case's bad record; position: first, or before the real traded kline of
    :data:`MIDDLE`, or mid-stream."""
    real = next(k for k in world.week if (k.symbol, k.open_time) == (TRADED, MIDDLE))
    if case == "nested_2000_deep":
        return b"BTCUSDT", b"[" * 2000 + b"]" * 2000, "first"
    if case == "one_mib":
        return b"BTCUSDT", payload(real, source="x" * (1024 * 1024 - 2000)), "first"
    if case == "count_null":
        return b"BTCUSDT", payload(real, count=None), "before_real"
    if case == "count_negative":
        return b"BTCUSDT", payload(real, count=-100), "before_real"
    if case == "thirteen_days_ahead":
        return b"BTCUSDT", world.later[(TRADED, MIDDLE + 13 * 24 * HOUR_MS)].to_json("binance-ws"), "before_real"
    years = {"first_dated_2016": -6, "first_dated_2030": 8}[case]
    first_traded = next(k for k in world.week if k.symbol == TRADED)
    return b"BTCUSDT", shifted(first_traded, years).to_json("binance-ws"), "first"


CASES = {
    "nested_2000_deep": "not_json",
    "one_mib": "oversized",
    "count_null": "missing_feature",
    "count_negative": "invalid_kline",
    "thirteen_days_ahead": "out_of_range",
    "first_dated_2016": "before_start",
    "first_dated_2030": "future",  # caught at the edge: it closes after the record was written
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_bad_record_then_a_week_of_real_klines(world: World, case: str) -> None:
    key, value, position = bad_record(case, world)
    with live_topics(world.settings) as live:
        records = as_records(live, world.week)
        index = 0 if position == "first" else next(
            i for i, k in enumerate(world.week) if (k.symbol, k.open_time) == (TRADED, MIDDLE))  # fmt: skip
        records.insert(index, signed(live, key, value))
        offsets = publish(live, records)
        alerts = ListAlerts()
        decisions = run_job(world, live, case.replace("_", "-"), alerts)
        dlq = dlq_by_offset(live)

    assert_same_decisions(world, decisions)
    bad = dlq[offsets[index]]
    assert bad.headers["dlq.reason"].decode().split(":")[0] == CASES[case], bad.headers["dlq.reason"]
    assert set(dlq) == {offsets[index]}, "only the bad record goes to the DLQ"
    assert bad.headers["dlq.sha256"] == hashlib.sha256(value).hexdigest().encode()
    clock = CASES[case] in ("out_of_range", "before_start", "future")
    assert alerts.kinds() == (["clock_outlier"] if clock else []), "the trader had nothing to quarantine"
    if case == "one_mib":
        assert len(value) > 1_000_000 and bad.headers["dlq.truncated"] == b"true"
        assert bad.value == value[: len(bad.value or b"")] and len(bad.value or b"") <= 64 * 1024
    else:
        assert bad.value == value


def test_forged_klines_before_the_real_one_are_refused_and_a_conflicting_duplicate_alerts(world: World) -> None:
    signing = world.settings.model_copy(update={"kline_signing_key": SecretStr(SIGNING_KEY)})
    real = next(k for k in world.week if (k.symbol, k.open_time) == (TRADED, MIDDLE))
    forged = replace(real, open=real.open * 1.02, high=real.high * 1.02, low=real.low * 1.02, close=real.close * 1.02)
    other_key = signing.model_copy(update={"kline_signing_key": SecretStr("a-forger-s-own-signing-key-42")})
    unsigned = world.settings  # no key: no signature header
    alerts = ListAlerts()
    with live_topics(signing) as live:
        records = as_records(live, world.week)
        index = next(i for i, k in enumerate(world.week) if (k.symbol, k.open_time) == (TRADED, MIDDLE))
        later = next(i for i, k in enumerate(world.week) if (k.symbol, k.open_time) == (TRADED, MIDDLE + HOUR_MS))
        conflicting = replace(world.week[later], volume=world.week[later].volume + 1.0)
        records.insert(later + 1, signed(live, b"BTCUSDT", conflicting.to_json("binance-ws")))  # after the real one
        records[index:index] = [
            signed(other_key, b"BTCUSDT", forged.to_json("binance-ws")),  # a wrong signature
            signed(unsigned, b"BTCUSDT", forged.to_json("binance-ws")),  # no signature
        ]
        offsets, topic = publish(live, records), live.kafka_topic_klines
        decisions = run_job(world, live, "signed", alerts)
        dlq = dlq_by_offset(live)

    assert_same_decisions(world, decisions)  # the real kline was traded, not the forged ones 2% off
    assert decisions[MIDDLE]["price"] == real.close
    reasons = {offset: r.headers["dlq.reason"].decode().split(":")[0] for offset, r in dlq.items()}
    assert reasons == {offsets[index]: "bad_signature", offsets[index + 1]: "unsigned",
                       offsets[later + 3]: "conflict"}  # fmt: skip
    (alert,) = [a for a in alerts.alerts if a.kind == "conflicting_duplicate"]
    assert alert.details["accepted"] == world.week[later].to_dict()
    assert alert.details["rejected"] == conflicting.to_dict()
    assert alert.details["source"] == f"{topic}/0/{offsets[later + 3]}"
    assert all(a.kind == "conflicting_duplicate" for a in alerts.alerts), [a.kind for a in alerts.alerts]


def test_the_ingestor_ignores_forged_and_future_records_when_it_resumes(world: World) -> None:
    from adapters.kafka import last_published_hours

    signing = world.settings.model_copy(update={"kline_signing_key": SecretStr(SIGNING_KEY)})
    last = world.week[-1]
    with live_topics(signing) as live:
        forger = live.model_copy(update={"kline_signing_key": SecretStr("a-forger-s-own-signing-key-42")})
        forged = signed(forger, b"BTCUSDT", shifted(last, 8).to_json("x"))
        publish(live, [*as_records(live, world.week[-5:]), forged])
        assert last_published_hours(live, signer=live.kline_signer())[TRADED] == last.open_time
        unsigned = world.settings.model_copy(update={"kafka_topic_klines": live.kafka_topic_klines})
        # without a key every record counts, but a kline closing in 2030 is still from the future
        assert last_published_hours(unsigned)[TRADED] == last.open_time


def test_a_run_that_rejects_everything_does_not_report_success(world: World) -> None:
    from streaming.micro_batch import EmptyRunError
    from streaming.spark_job import StreamOptions, run_stream
    from tests.integration.test_live_spark_job import Recorder

    alerts = ListAlerts()
    with live_topics(world.settings) as live:
        publish(live, [signed(live, b"BTCUSDT", shifted(k, 8).to_json("x")) for k in world.week[:20]])
        options = StreamOptions(name=f"poison-empty-{uuid.uuid4().hex[:6]}", available_now=True,
                                checkpoint_dir=world.work / "empty")  # fmt: skip
        with pytest.raises(EmptyRunError, match="rejected all 20 records"):
            run_stream(world.spark, live, Recorder(), options, alerts=alerts)
    assert "empty_run" in [a.kind for a in alerts.alerts] and "clock_outlier" in [a.kind for a in alerts.alerts]
