"""A REST catch-up publishes the missed klines hour by hour (all symbols of hour t before hour t + 1), in
one flush: published symbol after symbol, the stream's aligner would see the traded symbol hours ahead of
the others, decide those hours degraded and send the other symbols' klines to the DLQ as late."""

from __future__ import annotations

import asyncio

from models.kline import HOUR_MS
from streaming.ingestor import SOURCE_REST, Ingestor
from tests.streaming_fakes import T0, FakeRest, ListSink, kline

SYMBOLS = ["BNBUSDT", "BTCUSDT", "ETHUSDT"]


def test_a_catch_up_publishes_the_missed_hours_of_all_symbols_hour_by_hour_in_one_flush() -> None:
    history = [kline(s, h) for s in SYMBOLS for h in range(12)]  # REST answers symbol by symbol
    rest = FakeRest(history, now_ms=T0 + 10 * HOUR_MS + 60_000)  # hour 10 is still open
    sink = ListSink()
    last = {"BNBUSDT": T0 + 4 * HOUR_MS, "BTCUSDT": T0 + 2 * HOUR_MS, "ETHUSDT": T0 + 3 * HOUR_MS}
    ingestor = Ingestor(SYMBOLS, sink, rest, last_published=last)

    assert asyncio.run(ingestor.catch_up()) == 5 + 7 + 6
    hours = [(k.open_time - T0) // HOUR_MS for k, _ in sink.published]
    assert hours == sorted(hours), "an hour of one symbol was published after a later hour of another"
    expected = [(s, h) for h in range(3, 10) for s in SYMBOLS if T0 + h * HOUR_MS > last[s]]
    assert [(k.symbol, (k.open_time - T0) // HOUR_MS) for k, _ in sink.published] == expected
    assert {source for _, source in sink.published} == {SOURCE_REST}
    assert sink.flushes == 1
    assert ingestor.last_published == {s: T0 + 9 * HOUR_MS for s in SYMBOLS}
