"""Fault injection for the exchange simulator.

A :class:`FaultPlan` holds what should go wrong next; the server consults it on every request and
stream message. Tests set it through the constructor, :meth:`FaultPlan.add`, or the control endpoint
``POST /_sim/faults`` with one JSON fault (``DELETE /_sim/faults`` clears them):

- ``{"kind": "rate_limit", "count": 2, "retry_after": 1}`` → HTTP 429, ``Retry-After`` header, code -1003
- ``{"kind": "ban", "count": 1, "retry_after": 2}`` → HTTP 418 (IP banned for a while)
- ``{"kind": "server_error", "count": 1, "status": 503}`` → a 5xx
- ``{"kind": "drop_websocket", "after_messages": 3}`` → the next stream closes after that many messages
- ``{"kind": "gap", "symbol": "BTCUSDT", "open_time": 1609462800000}`` → that kline never appears
- ``{"kind": "corrupt", "symbol": "BTCUSDT", "open_time": ..., "how": "high_below_low" | "negative_volume"
  | "duplicate"}`` → that kline is served broken (REST and streams)

REST faults apply to ``/api/v3/`` paths starting with ``path`` (default ``/api/v3/klines``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CORRUPTIONS = ("high_below_low", "negative_volume", "duplicate")


@dataclass
class RestFault:
    """The next ``count`` matching requests fail with ``status``."""

    status: int
    count: int = 1
    retry_after: float | None = None
    path: str = "/api/v3/klines"


@dataclass
class FaultPlan:
    """What goes wrong next. Thread-safe: tests change it while the server runs in another thread."""

    rest: list[RestFault] = field(default_factory=list)
    drop_websocket_after: int | None = None
    gaps: set[tuple[str, int]] = field(default_factory=set)
    corruptions: dict[tuple[str, int], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, spec: dict[str, Any]) -> None:
        """Add one fault from its JSON form (see the module docstring); ValueError if malformed."""
        kind = spec.get("kind")
        with self._lock:
            if kind in ("rate_limit", "ban", "server_error"):
                status = {"rate_limit": 429, "ban": 418}.get(kind, int(spec.get("status", 503)))
                if kind == "server_error" and not 500 <= status <= 599:
                    raise ValueError(f"server_error status must be 5xx, got {status}")
                retry_after = spec.get("retry_after")
                self.rest.append(
                    RestFault(
                        status,
                        int(spec.get("count", 1)),
                        None if retry_after is None else float(retry_after),
                        str(spec.get("path", "/api/v3/klines")),
                    )
                )
            elif kind == "drop_websocket":
                self.drop_websocket_after = int(spec.get("after_messages", 0))
            elif kind == "gap":
                self.gaps.add((str(spec["symbol"]), int(spec["open_time"])))
            elif kind == "corrupt":
                how = str(spec.get("how", "high_below_low"))
                if how not in CORRUPTIONS:
                    raise ValueError(f"unknown corruption {how!r}; use one of {CORRUPTIONS}")
                self.corruptions[(str(spec["symbol"]), int(spec["open_time"]))] = how
            else:
                raise ValueError(
                    f"unknown fault kind {kind!r}; use rate_limit, ban, server_error, drop_websocket, gap or corrupt"
                )

    def clear(self) -> None:
        with self._lock:
            self.rest.clear()
            self.drop_websocket_after = None
            self.gaps.clear()
            self.corruptions.clear()

    def take_rest_fault(self, path: str) -> RestFault | None:
        """The fault the request to ``path`` must suffer, if any (consumes one of its ``count``)."""
        with self._lock:
            for fault in self.rest:
                if path.startswith(fault.path) and fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self.rest.remove(fault)
                    return fault
        return None

    def take_websocket_drop(self) -> int | None:
        """For a new stream: after how many messages to drop it (one-shot)."""
        with self._lock:
            after, self.drop_websocket_after = self.drop_websocket_after, None
            return after

    def apply(self, symbol: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Klines as they should be served: gaps removed, corruptions applied, duplicates doubled."""
        out = []
        with self._lock:
            gaps, corruptions = set(self.gaps), dict(self.corruptions)
        for row in rows:
            key = (symbol, row["open_time"])
            if key in gaps:
                continue
            how = corruptions.get(key)
            if how == "high_below_low":
                row = {**row, "high": row["low"] * 0.99}
            elif how == "negative_volume":
                row = {**row, "volume": -abs(row["volume"]) - 1.0}
            out.append(row)
            if how == "duplicate":
                out.append(dict(row))
        return out
