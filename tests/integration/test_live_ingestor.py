"""The ingestor on the real simulator and real Kafka: exactly the closed klines, each once, keyed by symbol,
and after a dropped websocket the missed hours come from REST."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from models.kline import HOUR_MS, Kline, klines_to_frame, parse_record
from models.settings import Settings
from tests.integration.live_helpers import IngestorThread, live_topics, read_topic, seed
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
T0 = 1_672_531_200_000
DAYS = 4
# simulated hours per real second: slow enough that the ingestor is connected (seconds, under load) well
# before the replay ends, so the websocket drop really happens mid-stream
SPEED = 4.0


def synthetic_klines() -> list[Kline]:
    out = []
    for s, symbol in enumerate(SYMBOLS):
        for hour in range(DAYS * 24):
            price = 100.0 * (s + 1) + hour
            open_time = T0 + hour * HOUR_MS
            close_time = open_time + HOUR_MS - 1
            prices = (price, price + 3, price - 2, price + 1)
            out.append(Kline(symbol, "1h", open_time, *prices, 10.0 + hour, close_time, 1000.0, 50 + hour, 4.0, 400.0))
    return out


def test_ingestor_publishes_each_closed_kline_once_and_fills_a_dropped_websocket_from_rest(
    settings: Settings, stack: object
) -> None:
    from simulator.faults import FaultPlan
    from simulator.server import SimulatorServer
    from simulator.store import KlineStore, ReplayClock

    stack.require("kafka")  # type: ignore[attr-defined]
    truth = {(k.symbol, k.open_time): k for k in synthetic_klines()}
    faults = FaultPlan()
    # two hours of messages (2 updates + 1 closed per symbol and hour), then the stream drops
    faults.add({"kind": "drop_websocket", "after_messages": 2 * 3 * len(SYMBOLS)})
    clock = ReplayClock(start_ms=T0 + 2 * HOUR_MS, speed=SPEED)
    server = SimulatorServer(KlineStore(klines_to_frame(list(truth.values()))), port=0, clock=clock, faults=faults)
    hours = DAYS * 24
    expected = {(s, T0 + h * HOUR_MS) for s in SYMBOLS for h in range(1, hours)}
    with server:
        urls = {"binance_base_url": server.base_url, "binance_ws_url": server.ws_url}
        with live_topics(settings, symbols=SYMBOLS, traded_symbol="BTCUSDT", **urls) as live:
            seed(live, [truth[(s, T0 + HOUR_MS)] for s in SYMBOLS])  # the last hour published before
            with IngestorThread(live) as ingestor:
                wait_for(lambda: ingestor.error or len(read_topic(live, live.kafka_topic_klines)) >= len(expected), 120)
                time.sleep(2)  # anything published twice would show up now
            assert ingestor.error is None, ingestor.error
            records = read_topic(live, live.kafka_topic_klines)

    result = ingestor.result
    assert result is not None and result.reconnects + result.connections >= 2, "the websocket drop was not seen"
    klines = [parse_record(r.value or b"") for r in records]
    assert all(r.key == k.symbol.encode() for r, k in zip(records, klines, strict=True))
    keys = Counter((k.symbol, k.open_time) for k in klines)
    assert max(keys.values()) == 1, "a kline was published twice"
    assert set(keys) == expected, "hours missing (or unexpected) in klines.1h"
    assert all(k == truth[(k.symbol, k.open_time)] for k in klines), "a non-closed (partial) kline was published"
    sources = Counter(parse_source(r.value or b"") for r in records[len(SYMBOLS) :])
    assert sources["binance-rest"] > 0 and sources["binance-ws"] > 0


def parse_source(value: bytes) -> str:
    import json

    return str(json.loads(value)["source"])
