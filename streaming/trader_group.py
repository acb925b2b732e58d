"""The traders of one stream as the Spark job sees them: the champion, its shadow challenger, the live monitor.

:class:`TraderGroup` is a :class:`~streaming.micro_batch.BatchTrader`: for every micro-batch it runs, in order,

1. the champion's :class:`~streaming.online_trader.OnlineTrader` (decisions, orders, positions, checkpoint);
2. the shadow challenger (streaming/shadow.py), when the stream runs one, on the same klines and batch id;
3. the live monitor (streaming/monitor.py), on the position rows both have committed.

Each has its own checkpoint and skips a batch id it has already committed, so a micro-batch replayed after a
crash anywhere between the three finishes the work of those behind and changes nothing of those ahead. The
champion always goes first and its rows are durable before the others start: they add nothing to the latency
of its decisions, and nothing they do (a shadow failure, a slow registry) reaches its orders, account or kill
switch. The judge of the stream (streaming/dlq.py) requires the fields the champion's model needs, never the
challenger's: the shadow's needs must not send the champion's klines to the DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from models.kline import Kline
from streaming.monitor import LiveMonitor, MonitorReport
from streaming.online_trader import BatchResult, OnlineTrader
from streaming.shadow import ShadowResult, ShadowTrader


@dataclass(frozen=True)
class GroupResult(BatchResult):
    """The champion's :class:`BatchResult`, with what the shadow and the monitor did."""

    shadow: ShadowResult | None = None
    monitor: MonitorReport | None = None


class TraderGroup:
    """See the module docstring."""

    def __init__(self, champion: OnlineTrader, shadow: ShadowTrader | None = None,
                 monitor: LiveMonitor | None = None) -> None:  # fmt: skip
        self.champion, self.shadow, self.monitor = champion, shadow, monitor

    # the champion's face, for the job and the tools that read a trader's rows
    @property
    def config(self) -> Any:
        return self.champion.config

    @property
    def sink(self) -> Any:
        return self.champion.sink

    @property
    def symbol(self) -> str:
        return self.champion.symbol

    @property
    def policy(self) -> Any:
        return self.champion.policy

    @property
    def last_batch_id(self) -> int:
        return self.champion.last_batch_id

    @property
    def version(self) -> str:
        return self.champion.version

    def required_fields(self) -> dict[str, tuple[str, ...]]:
        return self.champion.required_fields()

    def close(self) -> None:
        """Stop the model sources' polling threads and close the Cassandra connection the traders share."""
        sources = [self.champion.model_source, self.shadow.source if self.shadow else None]
        for source in sources:
            close = getattr(source, "close", None)
            if callable(close):
                close()
        db = getattr(self.champion.sink, "db", None)
        if db is not None:
            db.close()

    def process_batch(self, batch_id: int, klines: list[Kline], degraded: set[int] | None = None) -> GroupResult:
        champion = self.champion
        before = champion.market_state() if self.shadow is not None and self.shadow.idle else None
        last_hour = champion.last_hour
        result = champion.process_batch(batch_id, klines, degraded)
        shadow = None
        if self.shadow is not None:
            shadow = self.shadow.process_batch(batch_id, klines, degraded, champion.version, before)
        report = self.monitor.process_batch(batch_id, champion.last_hour, last_hour) if self.monitor else None
        values = {f.name: getattr(result, f.name) for f in fields(BatchResult)}
        return GroupResult(**values, shadow=shadow, monitor=report)
