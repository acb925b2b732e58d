"""The ingestor: closed klines only, holes filled from REST, nothing re-sent, reconnection with backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from models.errors import TemporaryError
from models.kline import HOUR_MS, Kline
from streaming.ingestor import SOURCE_REST, SOURCE_STREAM, Ingestor, StreamInterrupted
from tests.streaming_fakes import T0, FakeRest, ListSink, kline, ws_message

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_only_closed_klines_are_published() -> None:
    sink = ListSink()
    ingestor = Ingestor(SYMBOLS, sink, FakeRest([], now_ms=T0))
    for hour in range(3):
        for symbol in SYMBOLS:
            k = kline(symbol, hour)
            run(ingestor.on_message(ws_message(k, closed=False)))
            run(ingestor.on_message(ws_message(k, closed=False)))
            assert run(ingestor.on_message(ws_message(k, closed=True))) == 1
    assert sink.keys() == [(s, h) for h in range(3) for s in SYMBOLS]
    assert {source for _, source in sink.published} == {SOURCE_STREAM}


def test_messages_of_other_symbols_and_garbage_are_ignored() -> None:
    sink = ListSink()
    ingestor = Ingestor(SYMBOLS, sink, FakeRest([], now_ms=T0))
    assert run(ingestor.on_message(ws_message(kline("XRPUSDT", 0), closed=True))) == 0
    assert run(ingestor.on_message({"e": "trade", "p": "1"})) == 0
    assert sink.published == []


def test_a_closed_kline_after_a_hole_fills_the_hole_from_rest_first() -> None:
    history = [kline("BTCUSDT", h) for h in range(10)]
    rest = FakeRest(history, now_ms=T0 + 10 * HOUR_MS)
    sink = ListSink()
    ingestor = Ingestor(["BTCUSDT"], sink, rest)
    run(ingestor.on_message(ws_message(history[0], closed=True)))
    assert run(ingestor.on_message(ws_message(history[5], closed=True))) == 5
    assert sink.keys() == [("BTCUSDT", h) for h in range(6)]
    assert [s for _, s in sink.published[1:5]] == [SOURCE_REST] * 4
    assert rest.calls == [("BTCUSDT", T0 + HOUR_MS, T0 + 5 * HOUR_MS - 1)]


def test_catch_up_after_reconnect_publishes_only_closed_klines_since_the_last_hour() -> None:
    history = [kline(s, h) for h in range(8) for s in SYMBOLS]
    # server clock inside hour 6: hour 6 is still open and must not be published
    rest = FakeRest(history, now_ms=T0 + 6 * HOUR_MS + 60_000)
    sink = ListSink()
    ingestor = Ingestor(SYMBOLS, sink, rest, last_published={"BTCUSDT": T0 + 2 * HOUR_MS, "ETHUSDT": T0})
    assert run(ingestor.catch_up()) == 3 + 5
    assert sorted(sink.keys()) == sorted([("BTCUSDT", h) for h in range(3, 6)] + [("ETHUSDT", h) for h in range(1, 6)])
    # the stream then repeats hour 5 (already filled) and brings hour 6: only hour 6 goes out
    run(ingestor.on_message(ws_message(history[5 * 2], closed=True)))
    run(ingestor.on_message(ws_message(history[6 * 2], closed=True)))
    assert sink.keys()[-1] == ("BTCUSDT", 6)
    assert sink.keys().count(("BTCUSDT", 5)) == 1


def test_after_python_binance_reconnects_by_itself_the_missed_hours_are_filled_first() -> None:
    history = [kline("BTCUSDT", h) for h in range(10)]
    rest = FakeRest(history, now_ms=T0 + 7 * HOUR_MS + 1)
    sink = ListSink()
    ingestor = Ingestor(["BTCUSDT"], sink, rest)
    run(ingestor.on_message(ws_message(history[0], closed=True)))
    assert run(ingestor.on_message({"e": "error", "type": "ConnectionClosedError", "m": "gone"})) == 0
    assert ingestor.reconnects == 1
    # the first message after the reconnection is a non-closed update of hour 7: hours 1..6 come from REST
    assert run(ingestor.on_message(ws_message(history[7], closed=False))) == 6
    assert sink.keys() == [("BTCUSDT", h) for h in range(7)]
    assert [s for _, s in sink.published[1:]] == [SOURCE_REST] * 6


def test_an_error_that_ends_python_binance_read_loop_interrupts_the_session() -> None:
    ingestor = Ingestor(SYMBOLS, ListSink(), FakeRest([], now_ms=T0))
    with pytest.raises(StreamInterrupted):
        run(ingestor.on_message({"e": "error", "type": "BinanceWebsocketUnableToConnect", "m": "gave up"}))


class ScriptedStreams:
    """Each connection serves the next script: a list of messages, then an error (or ends quietly)."""

    def __init__(
        self, scripts: Sequence[Sequence[Mapping[str, Any]]], stop: asyncio.Event, end_quietly: bool = False
    ) -> None:
        self.scripts = scripts
        self.stop = stop
        self.end_quietly = end_quietly
        self.opened = 0

    @asynccontextmanager
    async def __call__(self, symbols: list[str]) -> AsyncIterator[AsyncIterator[Mapping[str, Any]]]:
        script = self.scripts[self.opened] if self.opened < len(self.scripts) else []
        self.opened += 1

        async def messages() -> AsyncIterator[Mapping[str, Any]]:
            for message in script:
                yield message
            if self.opened >= len(self.scripts):
                if not self.end_quietly:
                    self.stop.set()
                await asyncio.sleep(3600)
            yield {"e": "error", "type": "BinanceWebsocketUnableToConnect", "m": "simulated drop"}

        yield messages()


def test_run_reconnects_after_a_drop_and_fills_the_missed_hours() -> None:
    history = [kline("BTCUSDT", h) for h in range(12)]
    rest = FakeRest(history, now_ms=T0 + 8 * HOUR_MS + 1)
    sink = ListSink()
    ingestor = Ingestor(["BTCUSDT"], sink, rest)

    async def main() -> ScriptedStreams:
        stop = asyncio.Event()
        first = [ws_message(history[h], closed=c) for h in range(3) for c in (False, True)]
        second = [ws_message(history[h], closed=True) for h in (8, 9)]
        streams = ScriptedStreams([first, second], stop)
        await asyncio.wait_for(ingestor.run(streams, stop), timeout=10)
        return streams

    streams = run(main())
    assert streams.opened == 2
    assert ingestor.connections == 2
    assert sink.keys() == [("BTCUSDT", h) for h in range(10)]
    assert [s for _, s in sink.published[3:8]] == [SOURCE_REST] * 5


class FlakySink(ListSink):
    """Loses everything published since the last flush when its flush fails (a broker that went away)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.durable: list[tuple[Kline, str]] = []

    def flush(self) -> None:
        if self.failures:
            self.failures -= 1
            self.published = list(self.durable)
            raise TemporaryError("broker unavailable")
        self.durable = list(self.published)


def test_klines_whose_flush_failed_are_not_counted_as_published_and_come_again() -> None:
    history = [kline("BTCUSDT", h) for h in range(5)]
    sink = FlakySink(failures=1)
    ingestor = Ingestor(["BTCUSDT"], sink, FakeRest(history, now_ms=T0 + 4 * HOUR_MS + 1))
    run(ingestor.on_message(ws_message(history[0], closed=False)))
    with pytest.raises(TemporaryError):
        run(ingestor.on_message(ws_message(history[0], closed=True)))
    assert ingestor.last_published == {} and ingestor.published == 0
    run(ingestor.on_message(ws_message(history[0], closed=True)))
    run(ingestor.on_message(ws_message(history[3], closed=True)))
    assert sink.keys() == [("BTCUSDT", h) for h in range(4)]
    assert ingestor.last_published == {"BTCUSDT": history[3].open_time} and ingestor.published == 4


def test_a_silent_stream_triggers_a_rest_catch_up() -> None:
    history = [kline("BTCUSDT", h) for h in range(6)]
    rest = FakeRest(history, now_ms=T0 + 5 * HOUR_MS + 1)
    sink = ListSink()
    ingestor = Ingestor(["BTCUSDT"], sink, rest, last_published={"BTCUSDT": T0}, idle_seconds=0.2)

    async def main() -> None:
        stop = asyncio.Event()
        # connect: catch-up fills hours 1..4; then the stream is silent, hour 5 closes on the server
        streams = ScriptedStreams([[]], stop, end_quietly=True)
        task = asyncio.ensure_future(ingestor.run(streams, stop))
        await asyncio.sleep(0.1)
        rest.now_ms = T0 + 6 * HOUR_MS + 1
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    run(main())
    assert sink.keys() == [("BTCUSDT", h) for h in range(1, 6)]


def test_failing_connections_back_off_and_give_up_after_max_attempts() -> None:
    calls = 0

    @asynccontextmanager
    async def refuse(symbols: list[str]) -> AsyncIterator[AsyncIterator[Mapping[str, Any]]]:
        nonlocal calls
        calls += 1
        raise TemporaryError("connection refused")
        yield  # pragma: no cover

    ingestor = Ingestor(["BTCUSDT"], ListSink(), FakeRest([], now_ms=T0), max_attempts=2)
    with pytest.raises(TemporaryError, match="refused"):
        run(ingestor.run(refuse, asyncio.Event()))
    assert calls == 2
