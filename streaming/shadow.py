"""The shadow challenger: the registry's ``challenger`` deciding beside the champion, sending no order.

A :class:`ShadowTrader` runs an :class:`~streaming.online_trader.OnlineTrader` of its own on the same
micro-batches (same batch ids, same klines, same degraded hours) after the champion's trader has committed
each batch. It is a full trader under its own id (``<trader id>.shadow``, :func:`shadow_trader_id`): its
decisions, positions and hypothetical order rows go to the same tables, keyed like the champion's, so the
dashboard plots the two side by side. What makes it a shadow:

- its broker is :class:`~models.broker.ShadowBroker`: the paper broker's fills (the same fees and slippage,
  through the same accounting, models/accounting.py), recorded with mode ``shadow`` and no exchange id; it
  never sends anything, whatever the champion's trading mode;
- it reads no operator control (the kill switch stops orders; the shadow has none to stop) and has its own
  account, risk state and checkpoint: nothing it does reaches the champion's orders, account or switches;
- its model source follows the ``challenger`` alias: when the alias moves the shadow hot-swaps between
  micro-batches like the champion does (streaming/online_trader.py); its account carries on;
- when there is no challenger (the alias is unset, or points at the champion's own version, as right after a
  promotion) it is **idle**: it decides nothing, says so in the log (once per change) and in its result, and
  commits an *idle* checkpoint, so a restart stays idle. When a challenger appears again it starts a new
  account (the capital) and takes over the champion's kline history and hours (:class:`MarketState`), so it
  decides from the next hour on, without a warm-up. That seeded state is committed as the state before the
  batch, so a crash in its first batch replays exactly like any other.

Exactly once: the shadow's checkpoint is committed after the champion's, both with the batch id; a batch
replayed after a crash between the two is skipped by the champion and processed by the shadow (its in-flight
mark pins the challenger version it first ran with). A temporary error (a service away) goes up like the
champion's: Spark replays the batch, the champion skips it. Any other error of the shadow is contained: an
alert, the shadow reopens from its checkpoint at the next batch, and the champion never notices; the failed
batch's hours are lost to the shadow (decided later, gap-filled), never to the champion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from models.alerts import Alert, AlertSink, LoggingAlertSink, emit
from models.broker import ShadowBroker
from models.checkpoint import Checkpoint, decode_state, encode_state
from models.errors import KlinestreamError, TemporaryError
from models.kline import Kline
from models.ports import CheckpointStore, ModelSource, OnlineLogger, TradeSink
from streaming.online_trader import BatchResult, MarketState, OnlineTrader, TraderConfig
from streaming.risk import NoControls, RiskLimits

log = logging.getLogger(__name__)

SHADOW_SUFFIX = ".shadow"


def shadow_trader_id(trader_id: str) -> str:
    """The trader id of the shadow challenger beside ``trader_id``."""
    return f"{trader_id}{SHADOW_SUFFIX}"


@dataclass(frozen=True)
class ShadowResult:
    """What the shadow did with one micro-batch."""

    batch_id: int
    state: str
    """``traded`` (decided the batch's hours), ``skipped`` (already committed), ``idle`` or ``failed``."""
    note: str = ""
    result: BatchResult | None = None


class ShadowTrader:
    """See the module docstring. Build with :meth:`start`."""

    def __init__(self, config: TraderConfig, source: ModelSource, sink: TradeSink, checkpoints: CheckpointStore,
                 limits: RiskLimits, online_logger: OnlineLogger | None = None,
                 alerts: AlertSink | None = None) -> None:  # fmt: skip
        self.config, self.source, self.sink, self.checkpoints = config, source, sink, checkpoints
        self.limits = RiskLimits(limits.max_position_units, limits.max_order_notional, limits.daily_loss_limit)
        self.online_logger = online_logger
        self.alerts: AlertSink = alerts if alerts is not None else LoggingAlertSink()
        self.trader: OnlineTrader | None = None
        self.idle_reason: str | None = None
        self._reopen = False

    @classmethod
    def start(cls, config: TraderConfig, source: ModelSource, sink: TradeSink, checkpoints: CheckpointStore,
              limits: RiskLimits, online_logger: OnlineLogger | None = None,
              alerts: AlertSink | None = None) -> ShadowTrader:  # fmt: skip
        """The shadow restored from its checkpoint (trading, or idle), or idle until a challenger appears."""
        shadow = cls(config, source, sink, checkpoints, limits, online_logger, alerts)
        shadow._open()
        return shadow

    @property
    def trader_id(self) -> str:
        return self.config.trader_id

    @property
    def idle(self) -> bool:
        return self.trader is None

    def _trader(self, restore: bool) -> OnlineTrader:
        broker = ShadowBroker(self.config.fee_rate, self.config.slippage_bps)
        return OnlineTrader.start(self.config, self.source, broker, self.sink, self.checkpoints, self.limits,
                                  NoControls(), self.online_logger, self.alerts, restore=restore)  # fmt: skip

    def _open(self) -> None:
        self._reopen = False
        checkpoint = self.checkpoints.load_checkpoint(self.trader_id)
        if checkpoint is None:
            self._say_idle("not started yet")
            return
        idle = decode_state(checkpoint.blob).get("idle")
        if idle is not None:
            self._say_idle(str(idle))
            return
        self.trader = self._trader(restore=True)
        self.idle_reason = None

    def _say_idle(self, why: str) -> None:
        self.trader = None
        if why != self.idle_reason:
            log.warning("shadow idle trader_id=%s: %s", self.trader_id, why)
        self.idle_reason = why

    def _go_idle(self, batch_id: int, why: str) -> ShadowResult:
        """Stop deciding; the idle checkpoint tells a restart to stay idle."""
        state = {"trader_id": self.trader_id, "batch_id": batch_id, "idle": why}
        self.checkpoints.save_checkpoint(self.trader_id, Checkpoint(batch_id, "", 0, encode_state(state)))
        self._say_idle(why)
        return ShadowResult(batch_id, "idle", why)

    def wanted(self, champion_version: str) -> tuple[str | None, str]:
        """(the challenger version to trade, or None, and why not)."""
        try:
            version = self.source.current_version()
        except TemporaryError as exc:  # the registry is away: keep what is loaded (or stay idle)
            current = self.trader.version if self.trader is not None else None
            return current, f"challenger unknown, registry unavailable: {exc}"
        except KlinestreamError as exc:
            return None, f"no challenger: {exc}"
        if version == champion_version:
            return None, f"the challenger is the champion's version {version}"
        return version, ""

    def process_batch(self, batch_id: int, klines: list[Kline], degraded: set[int] | None, champion_version: str,
                      seed: MarketState | None) -> ShadowResult:  # fmt: skip
        """Decide the batch's hours with the challenger (``seed``: the champion's state before the batch, taken
        over when the shadow starts a new account)."""
        if self._reopen:
            self._open()
        trader = self.trader
        if trader is not None and batch_id <= trader.last_batch_id:
            return ShadowResult(batch_id, "skipped")
        version, why = self.wanted(champion_version)
        if trader is not None and version is None and trader.pinned_batch_id != batch_id:
            return self._go_idle(batch_id, why)
        if trader is None and (version is None or seed is None):
            self._say_idle(why or "waiting for the champion's state")
            return ShadowResult(batch_id, "idle", self.idle_reason or "")
        try:
            if trader is None:
                assert seed is not None
                trader = self._begin(batch_id, seed)
            result = trader.process_batch(batch_id, klines, degraded)
        except TemporaryError:
            raise  # a service is away: the batch is replayed (the champion skips it)
        except Exception as exc:
            return self._failed(batch_id, exc)
        return ShadowResult(batch_id, "traded", "", result)

    def _begin(self, batch_id: int, seed: MarketState) -> OnlineTrader:
        """A new account on the current challenger, at the champion's place in the stream, committed as the
        state before ``batch_id``."""
        trader = self._trader(restore=False)
        trader.adopt_market(seed, batch_id - 1)
        trader.commit()
        self.trader, self.idle_reason = trader, None
        log.warning("shadow started trader_id=%s model_version=%s batch_id=%d after_hour=%s", self.trader_id,
                    trader.version, batch_id, seed.last_hour)  # fmt: skip
        return trader

    def _failed(self, batch_id: int, exc: Exception) -> ShadowResult:
        log.error("shadow failed trader_id=%s batch_id=%d: %s", self.trader_id, batch_id, exc, exc_info=True)
        self.trader, self._reopen = None, True
        version = self.checkpoints.in_flight(self.trader_id)
        emit(self.alerts, Alert("shadow_failed", "warning",
                                f"shadow challenger {self.trader_id} failed micro-batch {batch_id} ({exc}): the "
                                "champion is not affected; the shadow resumes from its checkpoint",
                                f"shadow_failed:{self.trader_id}:{batch_id}",
                                {"trader_id": self.trader_id, "batch_id": batch_id, "error": str(exc)[:500],
                                 "model_version": version.model_version if version else None}))  # fmt: skip
        return ShadowResult(batch_id, "failed", str(exc))
