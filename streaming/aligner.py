"""Aligning the context symbols by hour, in event time.

A decision for hour ``t`` needs the kline of every context symbol for ``t``. The aligner holds klines
until their hour is complete and releases hours strictly in order. When a symbol's kline does not come,
the hour is released anyway, marked degraded with the missing symbols, once the **traded symbol already
has hour** ``t + timeout_hours`` — a rule on event time (the data), never on the wall clock, so a replay
of the same records after a crash releases the same hours with the same flags. An hour with no kline of
any symbol (an exchange outage) is released too, empty and degraded, and logged: never skipped silently.

A kline for an hour already released is rejected ("late", or "duplicate" when that exact key was
released within ``retention_hours``); a second kline for a pending key is a "duplicate"; a kline more
than ``max_ahead_hours`` past the *frontier* (the latest hour accepted so far, or the next hour to
release if later) is "out_of_range" (a poisoned clock would otherwise release every pending hour
degraded). The frontier moves with the data, so a backlog of any length in one micro-batch (a replay,
a stream catching up after days down) is accepted hour after hour. The state is a plain dict, saved
with every micro-batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from models.kline import HOUR_MS, Kline, parse_record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlignedHour:
    """One released hour: the klines it has (in symbol order) and the symbols it lacks."""

    open_time: int
    klines: tuple[Kline, ...]
    missing: tuple[str, ...]

    @property
    def degraded(self) -> bool:
        return bool(self.missing)


class HourAligner:
    """Event-time hour alignment of ``symbols``; ``traded_symbol``'s progress drives the timeout."""

    def __init__(
        self,
        symbols: Iterable[str],
        traded_symbol: str,
        timeout_hours: int = 2,
        retention_hours: int = 72,
        max_ahead_hours: int = 24 * 14,
    ) -> None:
        self.symbols = tuple(symbols)
        if traded_symbol not in self.symbols:
            raise ValueError(f"traded symbol {traded_symbol} is not one of {self.symbols}")
        if timeout_hours < 1:
            raise ValueError(f"timeout_hours must be >= 1, got {timeout_hours}")
        self.traded_symbol = traded_symbol
        self.timeout_hours = timeout_hours
        self.retention_hours = retention_hours
        self.max_ahead_hours = max_ahead_hours
        self.next_hour: int | None = None
        self.traded_latest: int | None = None
        self.frontier: int | None = None
        self.pending: dict[int, dict[str, Kline]] = {}
        self.released: dict[int, set[str]] = {}
        self.empty_hours = 0
        """Hours released without any kline (counted per aligner life, not persisted)."""

    # --- input -----------------------------------------------------------------------------------
    def add(self, kline: Kline) -> tuple[str, str] | None:
        """Hold ``kline`` for its hour; returns ``(reason code, detail)`` when it must be rejected."""
        hour, symbol = kline.open_time, kline.symbol
        if symbol not in self.symbols:
            return ("unknown_symbol", f"{symbol!r} is not aligned")
        if self.next_hour is not None and hour < self.next_hour:
            if symbol in self.released.get(hour, ()):
                return ("duplicate", f"{symbol} {hour} was already decided")
            return ("late", f"{symbol} {hour} arrived after its hour was decided (next hour {self.next_hour})")
        known = [h for h in (self.next_hour, self.frontier) if h is not None]
        if known and hour > max(known) + self.max_ahead_hours * HOUR_MS:
            return ("out_of_range", f"{symbol} {hour} is more than {self.max_ahead_hours} h past {max(known)}")
        slot = self.pending.setdefault(hour, {})
        if symbol in slot:
            return ("duplicate", f"{symbol} {hour} is already pending")
        slot[symbol] = kline
        if self.frontier is None or hour > self.frontier:
            self.frontier = hour
        if symbol == self.traded_symbol and (self.traded_latest is None or hour > self.traded_latest):
            self.traded_latest = hour
        return None

    # --- output ----------------------------------------------------------------------------------
    def release(self) -> list[AlignedHour]:
        """Release, in hour order, every hour that is complete or has timed out in event time."""
        out: list[AlignedHour] = []
        while self.pending:
            if self.next_hour is None:
                self.next_hour = min(self.pending)
            hour = self.next_hour
            slot = self.pending.get(hour, {})
            if not all(s in slot for s in self.symbols) and not self._timed_out(hour):
                break
            out.append(self._release_hour(hour, self.pending.pop(hour, {})))
        self._forget_old()
        return out

    def _timed_out(self, hour: int) -> bool:
        return self.traded_latest is not None and self.traded_latest >= hour + self.timeout_hours * HOUR_MS

    def _release_hour(self, hour: int, slot: dict[str, Kline]) -> AlignedHour:
        missing = tuple(s for s in self.symbols if s not in slot)
        klines = tuple(slot[s] for s in self.symbols if s in slot)
        if not klines:
            self.empty_hours += 1
            log.warning("hour without any kline open_time=%d: released empty, degraded", hour)
        elif missing:
            log.warning("degraded hour open_time=%d missing=%s", hour, ",".join(missing))
        self.released[hour] = set(slot)
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
            "next_hour": self.next_hour,
            "traded_latest": self.traded_latest,
            "frontier": self.frontier,
            "pending": [k.to_json("aligner").decode() for slot in self.pending.values() for k in slot.values()],
            "released": {str(h): sorted(s) for h, s in self.released.items()},
        }

    def restore(self, state: dict[str, Any]) -> HourAligner:
        """Continue from a :meth:`state` snapshot."""
        self.next_hour = state.get("next_hour")
        self.traded_latest = state.get("traded_latest")
        self.frontier = state.get("frontier", self.next_hour)
        self.pending = {}
        for text in state.get("pending", []):
            kline = parse_record(text)
            self.pending.setdefault(kline.open_time, {})[kline.symbol] = kline
        self.released = {int(h): set(s) for h, s in state.get("released", {}).items()}
        return self
