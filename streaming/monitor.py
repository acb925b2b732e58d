"""The live monitor: does the champion trail its baselines over a rolling window? Alert, and maybe roll back.

**Where it runs.** Inside the stream's micro-batch loop, after the champion's trader (and the shadow
challenger, streaming/shadow.py) committed the batch (streaming/trader_group.py). There it costs two bounded
reads of position rows per micro-batch, sees every hour in event time as soon as it is decided, and is
exactly once like the traders: it has its own checkpoint (``<trader id>.monitor`` in the trader's checkpoint
store) committed with the batch id, so a replayed batch recomputes the same figures and alerts (same keys), and a
restart resumes where the last committed batch left it. A process of its own would need its own supervision,
a clock to poll on and its own idea of "the hours so far"; nothing it would gain.

**The window.** At every hour ``h`` the champion decided, the window is the ``window_hours`` hour-steps
ending at ``h``: the position rows (models/records.py ``PositionRecord``, the account marked after each hour's
order) of ``h - window_hours`` … ``h``, all present and all decided by the same model version (so a new
champion is judged only after a full window of its own hours). Returns over the window, after fees:

- champion: ``equity(h) / equity(h - window) - 1`` of the champion's trader;
- buy-and-hold: the same ratio of the trader's ``buy_hold_equity`` column (the traded symbol's price ratio);
- cash: 0;
- challenger: the same ratio of the shadow trader's equity (``<trader id>.shadow``) when it has a row at every
  hour of the window, all of one version other than the champion's; otherwise it has no figure.

**Trails.** The champion trails when its window return is below every one of the ``baselines`` (setting
``KLINESTREAM_MONITOR_BASELINES``, default cash, buy-and-hold and challenger) that has a figure, each by more
than ``margin`` (``KLINESTREAM_MONITOR_MARGIN``, a fraction of equity: 0.01 = one percentage point). The first
trailing hour of a version starts an *episode*: one ``champion_trailing`` alert with key
``champion_trailing:<trader id>:<version>:<hour>``; the episode ends at the first hour that does not trail.

**Rollback** (``KLINESTREAM_MONITOR_AUTO_ROLLBACK``, off by default): at the start of an episode the monitor
puts the ``previous`` champion back through :class:`~models.ports.ChampionRegistry` (on MLflow,
``adapters.mlflow.aliases.MlflowChampionRegistry``: the same ``rollback`` call as ``klinestream promote
--rollback``), tagging both versions with ``monitor.*`` tags: the window, the figures, the time. At most once per
episode, also across a restart: the monitor acts only while the registry's champion is still the trailing
version and that version does not carry the episode's key as ``monitor.rolled_back_condition``; a registry that
is away (temporary error) is asked again at the next batches while the episode lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from models.alerts import Alert, AlertSink, LoggingAlertSink, emit
from models.checkpoint import Checkpoint, decode_state, encode_state
from models.errors import KlinestreamError, TemporaryError
from models.kline import HOUR_MS
from models.ports import ChampionRegistry, CheckpointStore, PositionSource
from models.records import PositionRecord
from models.settings import Settings

log = logging.getLogger(__name__)

BASELINES = ("cash", "buy_hold", "challenger")
MONITOR_SUFFIX = ".monitor"


@dataclass(frozen=True)
class MonitorConfig:
    window_hours: int = 168
    """Hour-steps in the window (168 = 7 days of decided hours)."""
    margin: float = 0.01
    """How far (fraction of equity) below a baseline's window return the champion must be to trail it."""
    baselines: tuple[str, ...] = BASELINES
    """What the champion must trail, each by ``margin`` (those without a figure are left out)."""
    auto_rollback: bool = False
    """Roll back to ``previous`` at the start of an episode."""

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitorConfig:
        return cls(settings.monitor_window_hours, settings.monitor_margin, settings.monitor_baselines,
                   settings.monitor_auto_rollback)  # fmt: skip


@dataclass(frozen=True)
class WindowFigures:
    """Window returns (fractions, after fees) ending at the hour ``end``; ``start`` is the base row's hour."""

    model_version: str
    start: int
    end: int
    hours: int
    champion: float
    buy_hold: float
    cash: float = 0.0
    challenger: float | None = None
    challenger_version: str | None = None

    def baselines(self) -> dict[str, float]:
        """The baselines that have a figure."""
        out = {"cash": self.cash, "buy_hold": self.buy_hold}
        if self.challenger is not None:
            out["challenger"] = self.challenger
        return out


def window_figures(champion: Mapping[int, PositionRecord], shadow: Mapping[int, PositionRecord], end: int,
                   window_hours: int) -> WindowFigures | None:  # fmt: skip
    """The figures of the window ending at ``end`` (rows by open_time), or None when the champion's is not full:
    a row missing, or rows of more than one model version."""
    hours = range(end - window_hours * HOUR_MS, end + HOUR_MS, HOUR_MS)
    marks = [champion.get(h) for h in hours]
    if any(m is None for m in marks):
        return None
    rows = [m for m in marks if m is not None]
    version = rows[-1].model_version
    if any(m.model_version != version for m in rows):
        return None
    first, last = rows[0], rows[-1]
    figures = WindowFigures(version, first.open_time, end, window_hours, last.equity / first.equity - 1.0,
                            last.buy_hold_equity / first.buy_hold_equity - 1.0)  # fmt: skip
    other = [shadow.get(h) for h in hours]
    shadow_rows = [m for m in other if m is not None]
    versions = {m.model_version for m in shadow_rows}
    if len(shadow_rows) != len(rows) or len(versions) != 1 or version in versions:
        return figures
    challenger = shadow_rows[-1].equity / shadow_rows[0].equity - 1.0
    return WindowFigures(**{**asdict(figures), "challenger": challenger, "challenger_version": versions.pop()})


def trailing(figures: WindowFigures, config: MonitorConfig) -> dict[str, float] | None:
    """How far the champion is below each of the configured baselines with a figure (``baseline - champion``)
    when it is below every one of them by more than the margin; None when it does not trail."""
    available = {name: value for name, value in figures.baselines().items() if name in config.baselines}
    gaps = {name: value - figures.champion for name, value in available.items()}
    return gaps if gaps and all(gap > config.margin for gap in gaps.values()) else None


def iso_hour(open_time: int) -> str:
    return datetime.fromtimestamp(open_time / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def why_tags(trader_id: str, figures: WindowFigures, gaps: Mapping[str, float], config: MonitorConfig,
             key: str) -> dict[str, str]:  # fmt: skip
    """The ``monitor.*`` tags that say why a version was rolled back."""
    trailed = ", ".join(f"{name} by {gap:.2%}" for name, gap in gaps.items())
    return {
        "monitor.reason": f"champion version {figures.model_version} of trader {trader_id} trailed {trailed} "
        f"(margin {config.margin:.2%}) over {figures.hours} decided hours",
        "monitor.trader_id": trader_id,
        "monitor.condition": key,
        "monitor.window_start": iso_hour(figures.start),
        "monitor.window_end": iso_hour(figures.end),
        "monitor.window_hours": str(figures.hours),
        "monitor.margin": f"{config.margin:.6f}",
        "monitor.champion_return": f"{figures.champion:.6f}",
        "monitor.buy_hold_return": f"{figures.buy_hold:.6f}",
        "monitor.cash_return": f"{figures.cash:.6f}",
        "monitor.challenger_return": "" if figures.challenger is None else f"{figures.challenger:.6f}",
        "monitor.challenger_version": figures.challenger_version or "",
    }


@dataclass(frozen=True)
class MonitorReport:
    """What the monitor did with one micro-batch."""

    batch_id: int
    skipped: bool = False
    hours: int = 0
    """Hours evaluated."""
    trailing_since: int | None = None
    """The hour the current episode started (None: the champion does not trail)."""
    alerts: tuple[Alert, ...] = ()
    rolled_back_to: str | None = None
    last_figures: WindowFigures | None = None


class LiveMonitor:
    """See the module docstring. Build with :meth:`start` (restores its checkpoint)."""

    def __init__(self, config: MonitorConfig, trader_id: str, symbol: str, positions: PositionSource,
                 checkpoints: CheckpointStore, registry: ChampionRegistry | None = None, shadow_id: str | None = None,
                 alerts: AlertSink | None = None) -> None:  # fmt: skip
        self.config, self.trader_id, self.symbol, self.shadow_id = config, trader_id, symbol, shadow_id
        self.positions, self.checkpoints, self.registry = positions, checkpoints, registry
        self.alerts: AlertSink = alerts if alerts is not None else LoggingAlertSink()
        self.last_batch_id = -1
        self.last_hour: int | None = None
        self.episode: dict[str, Any] | None = None
        """The current episode: version, since (hour), key."""
        self.pending: dict[str, Any] | None = None
        """A rollback to make: key, tags, version."""
        if config.auto_rollback and registry is None:
            log.warning("monitor trader_id=%s: auto rollback is on but there is no registry (a model folder?): "
                        "alerts only", trader_id)  # fmt: skip

    @property
    def monitor_id(self) -> str:
        return f"{self.trader_id}{MONITOR_SUFFIX}"

    @classmethod
    def start(cls, config: MonitorConfig, trader_id: str, symbol: str, positions: PositionSource,
              checkpoints: CheckpointStore, registry: ChampionRegistry | None = None, shadow_id: str | None = None,
              alerts: AlertSink | None = None) -> LiveMonitor:  # fmt: skip
        monitor = cls(config, trader_id, symbol, positions, checkpoints, registry, shadow_id, alerts)
        checkpoint = checkpoints.load_checkpoint(monitor.monitor_id)
        if checkpoint is not None:
            state = decode_state(checkpoint.blob)
            monitor.last_batch_id, monitor.last_hour = int(state["batch_id"]), state["last_hour"]
            monitor.episode, monitor.pending = state["episode"], state["pending"]
        return monitor

    def _commit(self) -> None:
        state = {"batch_id": self.last_batch_id, "last_hour": self.last_hour, "episode": self.episode,
                 "pending": self.pending}  # fmt: skip
        version = self.episode["version"] if self.episode else ""
        self.checkpoints.save_checkpoint(self.monitor_id, Checkpoint(self.last_batch_id, version, 0,
                                                                     encode_state(state)))  # fmt: skip

    def process_batch(self, batch_id: int, through: int | None, fresh_after: int | None = None) -> MonitorReport:
        """Evaluate every hour the champion decided after the last one evaluated, up to ``through`` (its last
        decided hour); a monitor with no checkpoint starts after ``fresh_after`` (the champion's last hour
        before this batch)."""
        if batch_id <= self.last_batch_id:
            return MonitorReport(batch_id, skipped=True)
        after = self.last_hour if self.last_hour is not None else fresh_after
        alerts: list[Alert] = []
        figures: WindowFigures | None = None
        evaluated = 0
        if through is not None and (after is None or through > after):
            start = None if after is None else after + HOUR_MS - self.config.window_hours * HOUR_MS
            champion = self._rows(self.trader_id, start, through)
            shadow = self._rows(self.shadow_id, start, through) if self.shadow_id else {}
            for hour in sorted(h for h in champion if after is None or h > after):
                figures = window_figures(champion, shadow, hour, self.config.window_hours)
                alerts += self._observe(hour, figures)
                evaluated += 1
            self.last_hour = through
        rolled_back = self._act(alerts)
        self.last_batch_id = batch_id
        self._commit()
        since = self.episode["since"] if self.episode else None
        return MonitorReport(batch_id, False, evaluated, since, tuple(alerts), rolled_back, figures)

    def _rows(self, trader_id: str | None, start: int | None, end: int) -> dict[int, PositionRecord]:
        assert trader_id is not None
        return {r.open_time: r for r in self.positions.positions_between(trader_id, self.symbol, start, end)}

    def _observe(self, hour: int, figures: WindowFigures | None) -> list[Alert]:
        gaps = trailing(figures, self.config) if figures is not None else None
        if gaps is None or figures is None:
            if self.episode is not None:
                log.info("monitor trader_id=%s: champion version %s no longer trails at %d", self.trader_id,
                         self.episode["version"], hour)  # fmt: skip
            self.episode = self.pending = None
            return []
        if self.episode is not None and self.episode["version"] == figures.model_version:
            return []  # the same episode goes on
        key = f"champion_trailing:{self.trader_id}:{figures.model_version}:{hour}"
        self.episode = {"version": figures.model_version, "since": hour, "key": key}
        tags = why_tags(self.trader_id, figures, gaps, self.config, key)
        if self.config.auto_rollback and self.registry is not None:
            self.pending = {"key": key, "version": figures.model_version, "tags": tags}
        alert = Alert("champion_trailing", "warning",
                      f"{tags['monitor.reason']}: return {figures.champion:+.2%} against cash {figures.cash:+.2%}, "
                      f"buy-and-hold {figures.buy_hold:+.2%}, challenger "
                      + ("-" if figures.challenger is None else f"{figures.challenger:+.2%}")
                      + (" (rolling back)" if self.pending else ""),
                      key, {**asdict(figures), "gaps": gaps, "auto_rollback": self.pending is not None})  # fmt: skip
        emit(self.alerts, alert)
        return [alert]

    def _act(self, alerts: list[Alert]) -> str | None:
        """Make the pending rollback, at most once (see the module docstring); returns the new champion."""
        pending, registry = self.pending, self.registry
        if pending is None or registry is None:
            return None
        key, version = str(pending["key"]), str(pending["version"])
        try:
            champion = registry.champion_version()
            if champion != version or registry.version_tags(version).get("monitor.rolled_back_condition") == key:
                log.warning("monitor trader_id=%s: no rollback for %s, the champion is now %s", self.trader_id, key,
                            champion)  # fmt: skip
                self.pending = None
                return None
            restored = registry.rollback(version, key, pending["tags"])
        except TemporaryError as exc:
            log.warning("monitor trader_id=%s: registry unavailable, rollback for %s retried at the next batch: %s",
                        self.trader_id, key, exc)  # fmt: skip
            return None
        except KlinestreamError as exc:
            self.pending = None
            alerts.append(self._rollback_alert(key, version, None, str(exc)))
            return None
        self.pending = None
        alerts.append(self._rollback_alert(key, version, restored, None))
        return restored

    def _rollback_alert(self, key: str, version: str, restored: str | None, error: str | None) -> Alert:
        if restored is not None:
            message = f"monitor rolled the champion back from version {version} to {restored} ({key})"
        else:
            message = f"monitor could not roll back champion version {version} ({key}): {error}"
        alert = Alert("champion_rolled_back", "warning" if restored else "error", message,
                      f"champion_rolled_back:{key.removeprefix('champion_trailing:')}",
                      {"trader_id": self.trader_id, "condition": key, "from_version": version,
                       "to_version": restored, "error": error})  # fmt: skip
        emit(self.alerts, alert)
        return alert
