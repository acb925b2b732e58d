"""Aligning the context symbols by hour, in event time, on a clock that no single kline can move.

A decision for hour ``t`` needs the kline of every context symbol for ``t``. The aligner holds klines
until their hour is complete and releases hours strictly in order. When a symbol's kline does not come,
the hour is released anyway, marked degraded with the missing symbols, once the **traded symbol already
has hour** ``t + timeout_hours`` on the trusted clock — a rule on event time (the data), never on the wall
clock, so a replay of the same records after a crash releases the same hours with the same flags. An hour
with no kline of any symbol (an exchange outage) is released too, empty and degraded, and logged.

**The trusted clock.** One kline cannot move it. The traded symbol's hour counts for the timeout only when it
is the next of the traded symbol's consecutive hours, or when a quorum (a majority) of the symbols agree on
that hour; the *frontier* (the latest trusted hour) moves the same way. A kline more than
``max_ahead_hours`` past the frontier is rejected (``out_of_range``, a clock outlier), so a kline dated 13
days ahead mid-stream is dead-lettered and the real klines after it are not "late". A backlog of any length
(a replay, days of catch-up in one micro-batch) is accepted hour after hour: each hour extends the chain.

**The first hour.** A new stream starts at a configured hour (``start_hour``), or its checkpointed state;
without either it starts where a quorum of symbols first agree on an hour (taking the klines of up to
``timeout_hours`` before it that arrived with them) — never at whatever record comes first. Until then klines
are held; when the start is set, held klines before it are rejected (``before_start``) and those too far
after it ``out_of_range``. Those rejections come out of :meth:`HourAligner.take_evicted` with the record
each kline came from (kept in the state), so they reach the DLQ like any other.

A kline for an hour already released is ``late``, or, when that (symbol, hour) was released within
``retention_hours``, a ``duplicate`` if it is the same kline and a ``conflict`` if its values differ; the
same for a second kline of a pending (symbol, hour). A conflict carries the accepted kline, for the alert.
The state is a plain dict, saved with every micro-batch.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from models.kline import HOUR_MS, Kline, parse_record
from streaming.dlq import RawRecord

log = logging.getLogger(__name__)

_KLINE_FIELDS = tuple(f.name for f in fields(Kline))


@dataclass(frozen=True, slots=True)
class AlignedHour:
    """One released hour: the klines it has (in symbol order) and the symbols it lacks."""

    open_time: int
    klines: tuple[Kline, ...]
    missing: tuple[str, ...]

    @property
    def degraded(self) -> bool:
        return bool(self.missing)


class Rejection(NamedTuple):
    """Why the aligner refused a kline: a reason code, a detail, and for a conflict the kline it had."""

    code: str
    detail: str
    accepted: Kline | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """A kline the aligner holds, with the record it came from (None for states written before records were kept)."""

    kline: Kline
    record: RawRecord | None = None


@dataclass(frozen=True, slots=True)
class Evicted:
    """A held kline rejected later (when the stream's first hour was set)."""

    held: Held
    rejection: Rejection


class HourAligner:
    """Event-time hour alignment of ``symbols``; ``traded_symbol``'s trusted progress drives the timeout."""

    def __init__(
        self,
        symbols: Iterable[str],
        traded_symbol: str,
        timeout_hours: int = 2,
        retention_hours: int = 72,
        max_ahead_hours: int = 24,
        start_hour: int | None = None,
    ) -> None:
        self.symbols = tuple(symbols)
        if traded_symbol not in self.symbols:
            raise ValueError(f"traded symbol {traded_symbol} is not one of {self.symbols}")
        if timeout_hours < 1:
            raise ValueError(f"timeout_hours must be >= 1, got {timeout_hours}")
        if start_hour is not None and start_hour % HOUR_MS:
            raise ValueError(f"start_hour {start_hour} is not on an hour boundary")
        self.traded_symbol = traded_symbol
        self.timeout_hours = timeout_hours
        self.retention_hours = retention_hours
        self.max_ahead_hours = max_ahead_hours
        self.quorum = len(self.symbols) // 2 + 1
        self.first_hour: int | None = start_hour
        self.next_hour: int | None = start_hour
        self.traded_latest: int | None = None
        self.frontier: int | None = None if start_hour is None else start_hour - HOUR_MS
        self.pending: dict[int, dict[str, Held]] = {}
        self.released: dict[int, dict[str, Kline | None]] = {}
        self.evicted: list[Evicted] = []
        self.empty_hours = 0
        """Hours released without any kline (counted per aligner life, not persisted)."""

    # --- input -----------------------------------------------------------------------------------
    def add(self, kline: Kline, record: RawRecord | None = None) -> Rejection | None:
        """Hold ``kline`` for its hour; returns the :class:`Rejection` when it must be dead-lettered."""
        hour, symbol = kline.open_time, kline.symbol
        if symbol not in self.symbols:
            return Rejection("unknown_symbol", f"{symbol!r} is not aligned")
        if self.first_hour is not None and hour < self.first_hour:
            return Rejection("before_start", f"{symbol} {hour} is before the stream's first hour {self.first_hour}")
        if self.next_hour is not None and hour < self.next_hour:
            kept = self.released.get(hour, {})
            if symbol in kept:
                return _again(kline, kept[symbol], f"{symbol} {hour} was already decided")
            return Rejection("late", f"{symbol} {hour} arrived after its hour was decided (next hour {self.next_hour})")
        if self.frontier is not None and hour > self.frontier + self.max_ahead_hours * HOUR_MS:
            return Rejection("out_of_range", f"{symbol} {hour} is more than {self.max_ahead_hours} h past the "
                             f"stream's clock {self.frontier}")  # fmt: skip
        slot = self.pending.setdefault(hour, {})
        if symbol in slot:
            return _again(kline, slot[symbol].kline, f"{symbol} {hour} is already pending")
        slot[symbol] = Held(kline, record)
        if self.next_hour is not None:
            self._trust(hour)
        return None

    def _trust(self, hour: int) -> None:
        """Move the trusted clock after a kline joined ``hour``: by agreement, or along the traded chain."""
        assert self.next_hour is not None and self.frontier is not None
        slot = self.pending[hour]
        agreed = len(slot) >= self.quorum
        if agreed and hour > self.frontier:
            self.frontier = hour
        anchor = max(self.traded_latest if self.traded_latest is not None else -HOUR_MS, self.next_hour - HOUR_MS)
        if agreed and self.traded_symbol in slot and hour > anchor:
            anchor = hour
        while self.traded_symbol in self.pending.get(anchor + HOUR_MS, ()):
            anchor += HOUR_MS
        if anchor >= self.next_hour:
            self.traded_latest = anchor
            self.frontier = max(self.frontier, anchor)

    # --- the first hour --------------------------------------------------------------------------
    def _start(self) -> None:
        """Set the first hour where a quorum first agrees; re-judge what was held before it."""
        agreed = [h for h, slot in self.pending.items() if len(slot) >= self.quorum]
        if not agreed:
            return
        first_agreed = min(agreed)
        first = min(h for h in self.pending if first_agreed - self.timeout_hours * HOUR_MS <= h <= first_agreed)
        held, self.pending = self.pending, {}
        self.first_hour = self.next_hour = first
        self.frontier = first - HOUR_MS
        log.info("stream clock starts open_time=%d (a quorum of %d symbols agree on %d)", first, self.quorum,
                 first_agreed)  # fmt: skip
        for hour in sorted(held):
            for item in held[hour].values():
                why = self.add(item.kline, item.record)
                if why is not None:
                    self.evicted.append(Evicted(item, why))

    def take_evicted(self) -> list[Evicted]:
        """The held klines rejected since the last call (to dead-letter)."""
        out, self.evicted = self.evicted, []
        return out

    # --- output ----------------------------------------------------------------------------------
    def release(self) -> list[AlignedHour]:
        """Release, in hour order, every hour that is complete or has timed out in event time."""
        if self.next_hour is None:
            self._start()
        out: list[AlignedHour] = []
        while self.pending and self.next_hour is not None:
            hour = self.next_hour
            slot = self.pending.get(hour, {})
            if not all(s in slot for s in self.symbols) and not self._timed_out(hour):
                break
            out.append(self._release_hour(hour, self.pending.pop(hour, {})))
        self._forget_old()
        return out

    def _timed_out(self, hour: int) -> bool:
        return self.traded_latest is not None and self.traded_latest >= hour + self.timeout_hours * HOUR_MS

    def _release_hour(self, hour: int, slot: dict[str, Held]) -> AlignedHour:
        missing = tuple(s for s in self.symbols if s not in slot)
        klines = tuple(slot[s].kline for s in self.symbols if s in slot)
        if not klines:
            self.empty_hours += 1
            log.warning("hour without any kline open_time=%d: released empty, degraded", hour)
        elif missing:
            log.warning("degraded hour open_time=%d missing=%s", hour, ",".join(missing))
        self.released[hour] = {k.symbol: k for k in klines}
        self.next_hour = hour + HOUR_MS
        return AlignedHour(hour, klines, missing)

    def _forget_old(self) -> None:
        if self.next_hour is None:
            return
        horizon = self.next_hour - self.retention_hours * HOUR_MS
        for hour in [h for h in self.released if h < horizon]:
            del self.released[hour]

    # --- state -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot (what a micro-batch leaves behind)."""
        return {
            "first_hour": self.first_hour,
            "next_hour": self.next_hour,
            "traded_latest": self.traded_latest,
            "frontier": self.frontier,
            "pending": [_held_state(item) for slot in self.pending.values() for item in slot.values()],
            "released": {
                str(h): {s: None if k is None else [getattr(k, f) for f in _KLINE_FIELDS] for s, k in kept.items()}
                for h, kept in self.released.items()
            },
        }

    def restore(self, state: dict[str, Any]) -> HourAligner:
        """Continue from a :meth:`state` snapshot (also those written before the trusted clock)."""
        self.next_hour = state.get("next_hour")
        self.first_hour = state.get("first_hour")
        self.traded_latest = state.get("traded_latest")
        self.frontier = state.get("frontier", self.next_hour)
        if self.frontier is None and self.next_hour is not None:
            self.frontier = self.next_hour - HOUR_MS
        self.pending = {}
        for entry in state.get("pending", []):
            item = _held_from_state(entry)
            self.pending.setdefault(item.kline.open_time, {})[item.kline.symbol] = item
        self.released = {}
        for hour, kept in state.get("released", {}).items():
            if isinstance(kept, list):  # symbols only (older states): repeats count as duplicates
                self.released[int(hour)] = dict.fromkeys(kept)
            else:
                self.released[int(hour)] = {s: None if v is None else Kline(*v) for s, v in kept.items()}
        return self


def _again(kline: Kline, accepted: Kline | None, where: str) -> Rejection:
    """A second kline for an accepted (symbol, hour): a harmless duplicate, or a conflict with the first."""
    if accepted is None or accepted == kline:
        return Rejection("duplicate", where)
    return Rejection("conflict", f"{where} with different values", accepted)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _held_state(item: Held) -> dict[str, Any]:
    record = item.record
    source = None
    if record is not None:
        source = {"topic": record.topic, "partition": record.partition, "offset": record.offset,
                  "timestamp_ms": record.timestamp_ms, "key": _b64(record.key),
                  "value": _b64(record.value)}  # fmt: skip
    return {"kline": item.kline.to_json("aligner").decode(), "record": source}


def _held_from_state(entry: str | dict[str, Any]) -> Held:
    if isinstance(entry, str):  # a kline only (older states)
        return Held(parse_record(entry))
    source = entry.get("record")
    record = None
    if source is not None:
        record = RawRecord(source["topic"], int(source["partition"]), int(source["offset"]), _unb64(source["key"]),
                           _unb64(source["value"]), int(source.get("timestamp_ms", 0)))  # fmt: skip
    return Held(parse_record(entry["kline"]), record)
