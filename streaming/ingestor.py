"""The ingestor: Binance kline websocket → closed klines only → Kafka ``klines.1h`` (shared/DESIGN.md §2, §4.2).

python-binance speaks to the exchange (:mod:`adapters.binance`). ``AsyncClient`` has no constructor
argument for an arbitrary base URL (only ``tld``/``base_endpoint`` inside Binance's host names, and
``create()`` pings Binance before one could change it), but its REST root is the instance attribute
``API_URL`` and ``BinanceSocketManager``'s stream root is ``STREAM_URL``: both are set right after
construction (:mod:`adapters.binance.endpoints`) when ``KLINESTREAM_BINANCE_BASE_URL`` /
``KLINESTREAM_BINANCE_WS_URL`` point at the simulator.

Nothing lost: the ingestor remembers the last hour it published per symbol (at start-up, read from the
tail of ``klines.1h``). After every connection it fills the hours since then from the REST klines
endpoint, up to the server's "now". After a drop, python-binance's socket reconnects by itself and
reports it as an error event: the ingestor fills the missed hours from REST as soon as the stream
delivers again (and a closed kline that arrives after a hole fills the hole first). When python-binance
gives up, the ingestor opens a new socket itself, backing off exponentially (tenacity; the backoff
starts afresh once a connection has delivered klines), and catches up again. A stream that says nothing
for ``idle_seconds`` (stalled, or still reconnecting) triggers a REST catch-up too. Nothing doubled on purpose:
a kline at or before the last published hour is not sent again (duplicates are harmless downstream).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from models.errors import KlineParseError, PermanentError, TemporaryError
from models.kline import HOUR_MS, Kline, parse_ws_kline
from models.settings import Settings

if TYPE_CHECKING:
    from streaming.metrics import IngestorMetrics

log = logging.getLogger(__name__)

SOURCE_STREAM = "binance-ws"
SOURCE_REST = "binance-rest"


class StreamInterrupted(TemporaryError):
    """The websocket broke after it had delivered klines: reconnect at once, with a fresh backoff."""


#: Error events python-binance's ReconnectingWebsocket puts on its queue while it reconnects by itself;
#: any other error event means its read loop has ended and the socket must be opened again.
SELF_HEALING_ERRORS = frozenset(
    {"ConnectionClosedError", "ConnectionClosedOK", "BinanceWebsocketClosed", "IncompleteReadError", "gaierror"}
)


class KlineSink(Protocol):
    """Where closed klines go (Kafka in production)."""

    def publish(self, kline: Kline, source: str) -> None: ...

    def flush(self) -> None:
        """Block until everything published is durable; TemporaryError otherwise."""


class KlineRest(Protocol):
    """The REST side of the exchange, as the ingestor needs it."""

    async def server_time(self) -> int: ...

    async def klines(self, symbol: str, start_ms: int, end_ms: int) -> list[Kline]:
        """Klines of ``symbol`` opened in ``[start_ms, end_ms]``, oldest first (all pages)."""
        ...


#: Opens the kline stream of the given symbols; the context yields message dicts until it breaks.
StreamOpener = Callable[[list[str]], AbstractAsyncContextManager[AsyncIterator[Mapping[str, Any]]]]


class Ingestor:
    """Filters kline stream messages to closed klines, fills holes from REST, publishes to a sink."""

    def __init__(
        self,
        symbols: Iterable[str],
        sink: KlineSink,
        rest: KlineRest,
        last_published: Mapping[str, int] | None = None,
        max_attempts: int | None = None,
        idle_seconds: float = 30.0,
    ) -> None:
        self.symbols = list(symbols)
        self.sink = sink
        self.rest = rest
        self.last_published: dict[str, int] = dict(last_published or {})
        self.max_attempts = max_attempts
        self.idle_seconds = idle_seconds
        self._delivered = 0
        self._unflushed: dict[str, int] = {}
        self._pending = 0
        self.published = 0
        self.filled = 0
        self.connections = 0
        self.reconnects = 0
        """Reconnections python-binance made by itself (after each, the missed hours are filled)."""
        self.catch_up_due = False

    async def on_message(self, message: Mapping[str, Any]) -> int:
        """Handle one stream message; returns how many klines it published (with any hole filled)."""
        if message.get("e") == "error":
            return self._on_stream_error(message)
        count = 0
        if self.catch_up_due:
            self.catch_up_due = False
            count += await self.catch_up()
        try:
            kline, closed = parse_ws_kline(message)
        except KlineParseError as exc:
            log.warning("ignored stream message: %s", exc)
            return count
        if not closed:
            return count
        if kline.symbol not in self.symbols:
            log.warning("ignored kline of unsubscribed symbol=%s open_time=%d", kline.symbol, kline.open_time)
            return count
        last = self.last_published.get(kline.symbol)
        if last is not None and kline.open_time <= last:
            return count
        if last is not None and kline.open_time > last + HOUR_MS:
            count += await self.fill(kline.symbol, last + HOUR_MS, kline.open_time - 1, now_ms=kline.open_time)
        self._publish(kline, SOURCE_STREAM)
        self._flush()
        return count + 1

    def _on_stream_error(self, message: Mapping[str, Any]) -> int:
        kind = str(message.get("type"))
        if kind in SELF_HEALING_ERRORS:
            # python-binance reconnects by itself; fill the hours it missed as soon as it delivers again
            self.reconnects += 1
            self.catch_up_due = True
            log.warning("kline stream reconnecting: %s %s", kind, message.get("m"))
            return 0
        raise StreamInterrupted(f"kline stream broke: {kind} {message.get('m')}")

    async def catch_up(self) -> int:
        """Fill, for every symbol with a known last hour, the closed klines since then (after a connect).

        The missed klines of all symbols are fetched first and published hour by hour (every symbol's hour
        *t* before any hour *t + 1*), as the websocket delivers them: published symbol after symbol, a
        running stream would see the traded symbol hours ahead of the other context symbols, release those
        hours degraded and send the other symbols' klines to the DLQ as late."""
        now = int(await retry_rest(self.rest.server_time, "server time"))
        missed: list[Kline] = []
        for symbol in self.symbols:
            last = self.last_published.get(symbol)
            if last is not None and last + 2 * HOUR_MS - 1 < now:  # the hour after the last one has closed
                missed += await self._missed(symbol, last + HOUR_MS, now, now_ms=now)
        order = {symbol: i for i, symbol in enumerate(self.symbols)}
        return self._publish_filled(sorted(missed, key=lambda k: (k.open_time, order[k.symbol])))

    async def fill(self, symbol: str, start_ms: int, end_ms: int, now_ms: int) -> int:
        """Publish the closed klines of ``symbol`` opened in ``[start_ms, end_ms]`` (close before ``now_ms``)."""
        return self._publish_filled(await self._missed(symbol, start_ms, end_ms, now_ms))

    async def _missed(self, symbol: str, start_ms: int, end_ms: int, now_ms: int) -> list[Kline]:
        """The closed klines of ``symbol`` opened in ``[start_ms, end_ms]`` not published yet, in hour order."""
        klines: list[Kline] = await retry_rest(
            lambda: self.rest.klines(symbol, start_ms, end_ms), f"REST klines of {symbol}"
        )
        last = self.last_published.get(symbol, -1)
        missed = [k for k in klines if k.symbol == symbol and k.event_time < now_ms and k.open_time > last]
        missed.sort(key=lambda k: k.open_time)
        log.info("filling from REST symbol=%s start=%d end=%d klines=%d", symbol, start_ms, end_ms, len(missed))
        return missed

    def _publish_filled(self, klines: list[Kline]) -> int:
        for kline in klines:
            self._publish(kline, SOURCE_REST)
        self._flush()
        self.filled += len(klines)
        return len(klines)

    def _publish(self, kline: Kline, source: str) -> None:
        self.sink.publish(kline, source)
        self._unflushed[kline.symbol] = kline.open_time
        self._pending += 1
        log.debug("published symbol=%s open_time=%d source=%s", kline.symbol, kline.open_time, source)

    def _flush(self) -> None:
        """Wait until the sink has everything; only then do those hours count as published (a failed flush
        leaves the last published hours where they were, so the next catch-up sends those klines again)."""
        unflushed, pending, self._unflushed, self._pending = self._unflushed, self._pending, {}, 0
        self.sink.flush()
        self.last_published.update(unflushed)
        self.published += pending

    async def run(self, open_stream: StreamOpener, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set: (re)connect with backoff, catch up from REST, publish closed klines."""
        while not stop.is_set():
            try:
                await self._connect_with_backoff(open_stream, stop)
            except StreamInterrupted as exc:
                log.warning("reconnecting: %s", exc)

    async def _connect_with_backoff(self, open_stream: StreamOpener, stop: asyncio.Event) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception(_worth_a_backoff),
            wait=wait_exponential_jitter(initial=0.5, max=30.0),
            stop=stop_after_attempt(self.max_attempts) if self.max_attempts else (lambda state: False),
            before_sleep=lambda state: log.warning(
                "stream connection failed attempt=%d: %s",
                state.attempt_number,
                state.outcome and state.outcome.exception(),
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._session(open_stream, stop)

    async def _session(self, open_stream: StreamOpener, stop: asyncio.Event) -> None:
        self._delivered = 0
        try:
            async with open_stream(self.symbols) as messages:
                self.connections += 1
                log.info("stream connected symbols=%s connection=%d", ",".join(self.symbols), self.connections)
                await self.catch_up()
                await self._pump(aiter(messages), stop)
        except TemporaryError as exc:
            if self._delivered:
                raise StreamInterrupted(str(exc)) from exc
            raise
        except (TimeoutError, OSError) as exc:
            error = StreamInterrupted if self._delivered else TemporaryError
            raise error(f"kline stream failed: {type(exc).__name__}: {exc}") from exc

    async def _pump(self, messages: AsyncIterator[Mapping[str, Any]], stop: asyncio.Event) -> None:
        """Handle messages until ``stop``; after ``idle_seconds`` of silence, catch up from REST (a stalled or
        still-reconnecting stream loses no closed hour)."""
        stopped = asyncio.ensure_future(stop.wait())
        pending = asyncio.ensure_future(anext(messages))
        try:
            while True:
                done, _ = await asyncio.wait(
                    {pending, stopped}, timeout=self.idle_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                if stopped in done:
                    return
                if not done:
                    self.catch_up_due = False
                    self._delivered += await self.catch_up()
                    continue
                try:
                    message = pending.result()
                except StopAsyncIteration:
                    raise TemporaryError("kline stream ended") from None
                pending = asyncio.ensure_future(anext(messages))
                self._delivered += await self.on_message(message)
        finally:
            for task in (pending, stopped):
                if not task.done():
                    task.cancel()


class MeteredSink:
    """A :class:`KlineSink` that counts klines in the ingestor's metrics once the wrapped sink made them durable."""

    def __init__(self, sink: KlineSink, metrics: IngestorMetrics) -> None:
        self.sink, self.metrics = sink, metrics
        self._pending: list[tuple[str, int, str]] = []

    def publish(self, kline: Kline, source: str) -> None:
        self.sink.publish(kline, source)
        self._pending.append((kline.symbol, kline.event_time, source))

    def flush(self) -> None:
        self.sink.flush()
        pending, self._pending = self._pending, []
        self.metrics.published_klines(pending)


def _worth_a_backoff(exc: BaseException) -> bool:
    """Temporary failures back off; an interrupted stream that had delivered reconnects at once."""
    return isinstance(exc, TemporaryError) and not isinstance(exc, StreamInterrupted)


async def retry_rest(call: Callable[[], Awaitable[Any]], what: str, attempts: int = 5) -> Any:
    """Run a REST call, retrying TemporaryError with exponential backoff; PermanentError fails at once."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TemporaryError),
        wait=wait_exponential_jitter(initial=0.5, max=10.0),
        stop=stop_after_attempt(attempts),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise PermanentError(f"{what}: no attempt made")  # pragma: no cover - tenacity always attempts


async def run_ingestor(
    settings: Settings,
    stop: asyncio.Event,
    max_attempts: int | None = None,
    idle_seconds: float = 30.0,
    metrics: IngestorMetrics | None = None,
    on_start: Callable[[Ingestor], None] | None = None,
) -> Ingestor:
    """Wire the ingestor from settings (topics, idempotent producer, python-binance) and run until ``stop``.

    ``metrics`` counts what it publishes; ``on_start`` receives the ingestor before it connects (the ops
    endpoint reads its connection counters)."""
    from adapters.binance.rest import BinanceRest, make_async_client
    from adapters.binance.websocket import open_kline_stream
    from adapters.kafka import KafkaKlineSink, build_producer, last_published_hours, require_topics
    from models.credentials import KafkaPrincipal

    require_topics(settings, KafkaPrincipal.INGESTOR, [settings.kafka_topic_klines])  # the admin path creates it
    signer = settings.kline_signer()
    if signer is None:
        log.warning("kline signing off: KLINESTREAM_KLINE_SIGNING_KEY is unset, klines are published unsigned")
    last = last_published_hours(settings, signer=signer)
    log.info("last published hours: %s", " ".join(f"{s}={t}" for s, t in sorted(last.items())) or "none")
    producer = build_producer(settings, client_id="klinestream-ingestor", principal=KafkaPrincipal.INGESTOR)
    client = make_async_client(settings.binance_base_url)
    symbols = list(settings.symbols)
    sink: KlineSink = KafkaKlineSink(producer, settings.kafka_topic_klines, signer)
    if metrics is not None:
        sink = MeteredSink(sink, metrics)
        for symbol, open_time in last.items():
            metrics.kline_ages.saw(symbol, open_time + HOUR_MS - 1)
    ingestor = Ingestor(symbols, sink, BinanceRest(client), last, max_attempts, idle_seconds)
    if on_start is not None:
        on_start(ingestor)
    try:
        await ingestor.run(lambda syms: open_kline_stream(client, syms, settings.binance_ws_url), stop)
    finally:
        producer.flush()
        producer.close()
        await client.close_connection()
    log.info(
        "ingestor stopped published=%d filled=%d connections=%d",
        ingestor.published,
        ingestor.filled,
        ingestor.connections,
    )
    return ingestor
