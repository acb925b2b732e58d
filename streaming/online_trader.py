"""The online trader: micro-batches of klines in, decisions, orders and positions out; plain Python.

The Spark job calls :meth:`OnlineTrader.process_batch` from ``foreachBatch`` on the driver with the
batch id and the batch's parsed, validated klines (any order, duplicates allowed, several hours per
batch under replay). Per batch:

1. **Exactly once.** A batch id ≤ the checkpointed id was already processed: nothing is done. Else
   the batch is marked *in flight* (id + model version) before anything is written.
2. **Hot swap.** The model source is asked whether the champion moved; if so the new version is
   loaded, the online learner restarts from its weights, and the swap is logged and recorded on the
   next decision. A batch replayed after a crash keeps the version it was first processed with.
3. **Hours, in order.** Klines join a rolling history per context symbol. The Spark layer's hour
   aligner (streaming/aligner.py) releases hours in order, complete or degraded; ``degraded`` holds
   the open_times it released although some symbols' klines were missing (even none at all). The
   trader decides, in ascending order, every hour up to the latest hour that is complete (every
   context symbol has its kline) or was passed in ``degraded`` in this or an earlier batch. A
   degraded hour is decided with the feature transform's gap filling, like the backtest (the traded
   symbol's missing hour is a forced hold); an hour with no kline at all is decided once a later
   kline gives the feature grid that hour. Hours without a full state (warm-up, or a context symbol
   with no kline yet at all) are passed over. A kline the model cannot use (a field its features need is
   missing, a value out of range) is quarantined (streaming/quarantine.py): kept out of the history, its
   hour decided degraded as a hold, with an alert; so is an hour whose Q-values are not finite.
4. **Decide** with the policy's feature path (:meth:`~models.policy.Policy.feature_rows`) and the
   **target** network, epsilon-greedy with the agent's seeded generator (greedy when online learning
   is off: then the actions equal the offline backtest of the same version hour for hour).
5. **Order** through the risk checks and the broker with a deterministic client order id; write the
   order, decision and position rows (upserts under deterministic keys). An action that cannot be an
   order (a sell with nothing held, a buy with no room: streaming/risk.py ``not_executable``) writes no
   order row: its decision says ``order_status`` ``not_executable`` and ``order_reason`` why. The sink
   buffers the rows and the trader flushes once per batch, after its last hour; an order for a real
   exchange (testnet, live) has its ``new`` row flushed before it is sent.
6. **Learn** online: the previous hour's transition is completed with this hour's state and reward,
   stored, and the due gradient steps are taken on the policy net (target synced every K steps).
7. **Checkpoint** the whole state with the batch id: the commit of the batch.

Writes before the checkpoint are idempotent, and a restart restores the state of the last committed
batch, so Spark's replay of an uncommitted batch re-produces the same rows and client order ids.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from models.accounting import TradingRules, check_rules
from models.alerts import AlertSink, LoggingAlertSink, emit
from models.broker import UNSENT_MODES, Broker, OrderRequest
from models.checkpoint import Checkpoint, InFlight, decode_state, encode_state
from models.config import DEFAULT_CAPITAL
from models.errors import KlinestreamError
from models.features import FeatureTable
from models.kline import HOUR_MS, Kline, klines_to_frame
from models.policy import Policy
from models.ports import CheckpointStore, Controls, ModelSource, OnlineLogger, TradeSink
from models.records import MIN_HOLD, NOT_EXECUTABLE, SIDES, DecisionRecord, OrderRecord, PositionRecord, client_order_id
from models.settings import Settings
from streaming.history import History
from streaming.model_source import NoOnlineLogging
from streaming.online_learner import OnlineConfig, OnlineLearner
from streaming.portfolio import Portfolio
from streaming.quarantine import quarantine_alert, required_columns, unusable
from streaming.risk import (
    KILL_SWITCH,
    AccountView,
    CachedKillSwitch,
    NoControls,
    RiskLimits,
    check_order,
    not_executable,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TraderConfig:
    trader_id: str = "paper-BTCUSDT"
    """Names the trader's rows and checkpoint; one per account and traded symbol."""
    capital: float = DEFAULT_CAPITAL
    """Starting cash in the quote asset."""
    order_units: float = 1.0
    """Base units per buy (a sell sells this much, or what is held), as the reference's one unit."""
    fee_rate: float = 0.001
    """Fee per side, for the cash check before a buy (the broker charges the real fee)."""
    slippage_bps: float = 0.0
    """Slippage assumed when sizing portfolio-accounting buys."""
    accounting: str | None = None
    """models.config.ACCOUNTINGS: order sizing and account features; None = the policy's training accounting."""
    reward: str | None = None
    """Online reward, one of models.config.REWARD_KINDS (models/accounting.py); None = the policy's training reward."""
    online: OnlineConfig = field(default_factory=OnlineConfig)
    log_online_every: int = 0
    """Log the online weights every this many gradient steps (0 = never)."""
    control_ttl_seconds: float = 1.0
    """Re-read the kill-switch control at most this often."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TraderConfig:
        base = {"trader_id": f"{settings.trading_mode}-{settings.traded_symbol}", "fee_rate": settings.fee_rate,
                "slippage_bps": settings.slippage_bps}  # fmt: skip
        return cls(**{**base, **overrides})


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    skipped: bool
    """The batch id was already committed: nothing was done."""
    model_version: str
    decisions: tuple[DecisionRecord, ...] = ()
    orders: tuple[OrderRecord, ...] = ()
    online_updates: int = 0
    waiting_hours: tuple[int, ...] = ()
    """open_times received but not decided yet (waiting for klines of other symbols)."""
    swapped_from: str | None = None
    rows_durable_at: float | None = None
    """Wall-clock time (``time.time()``) at which the batch's decision, order and position rows were durable."""
    position: PositionRecord | None = None
    """The last position row the batch wrote (the account after its last decided hour)."""
    loss: float | None = None
    """Huber loss of the latest online gradient step (None before the first one)."""


class _Outcome(NamedTuple):
    """What became of a decision's action: its order row (None: not an order), realised profit, status, reason."""

    order: OrderRecord | None
    profit: float
    status: str | None
    reason: str | None


_NO_ORDER = _Outcome(None, 0.0, None, None)
_HELD = _Outcome(None, 0.0, NOT_EXECUTABLE, MIN_HOLD)


@dataclass(frozen=True)
class MarketState:
    """Where a trader is in the stream: its kline history and the hours it has decided and released. A shadow
    trader that starts beside a running one takes it over (streaming/shadow.py), so it decides from the next hour
    on, with a full window, instead of warming up."""

    history: History
    last_hour: int | None
    released_until: int | None


@dataclass
class _Pending:
    """The last decided hour, waiting for the next state to become a transition."""

    hour: int
    account: np.ndarray
    action: int
    profit: float
    equity_before: float
    notional: float = 0.0
    """Traded notional of the hour's fill (quantity × fill price; the turnover penalty's measure)."""


class OnlineTrader:
    """See the module docstring. Build with :meth:`start` (restores the checkpoint if there is one)."""

    def __init__(self, config: TraderConfig, model_source: ModelSource, broker: Broker, sink: TradeSink,
                 checkpoints: CheckpointStore, limits: RiskLimits, controls: Controls | None = None,
                 online_logger: OnlineLogger | None = None, alerts: AlertSink | None = None) -> None:  # fmt: skip
        self.config, self.model_source, self.broker, self.sink = config, model_source, broker, sink
        self.alerts: AlertSink = alerts if alerts is not None else LoggingAlertSink()
        self.quarantined: dict[int, str] = {}
        """Hours decided (or to decide) degraded as a hold, with why (streaming/quarantine.py)."""
        self.checkpoints, self.limits = checkpoints, limits
        self.kill_switch = CachedKillSwitch(controls or NoControls(), config.control_ttl_seconds)
        self.online_logger = online_logger or NoOnlineLogging()
        self.version = ""
        self.policy: Policy | None = None
        self.learner: OnlineLearner | None = None
        self.history = History()
        self.portfolio = Portfolio.start(config.capital)
        self.last_hour: int | None = None
        self.released_until: int | None = None
        self.last_batch_id = -1
        self.pending: _Pending | None = None
        self.swapped_from: str | None = None
        self.logged_updates = 0
        self._pinned: InFlight | None = None
        self._replaying = False
        self._last_position: PositionRecord | None = None

    # --- life cycle -----------------------------------------------------------------------------
    @classmethod
    def start(cls, config: TraderConfig, model_source: ModelSource, broker: Broker, sink: TradeSink,
              checkpoints: CheckpointStore, limits: RiskLimits, controls: Controls | None = None,
              online_logger: OnlineLogger | None = None, alerts: AlertSink | None = None,
              restore: bool = True) -> OnlineTrader:  # fmt: skip
        """A trader restored from its last checkpoint, or a fresh one on the model source's current version
        (also when ``restore`` is False: a new account that ignores the checkpoint until it commits its own)."""
        trader = cls(config, model_source, broker, sink, checkpoints, limits, controls, online_logger, alerts)
        checkpoint = checkpoints.load_checkpoint(config.trader_id) if restore else None
        if checkpoint is None:
            trader._use_version(model_source.current_version())
            log.info("trader start trader_id=%s model_version=%s fresh", config.trader_id, trader.version)
        else:
            trader._restore(checkpoint)
        in_flight = checkpoints.in_flight(config.trader_id) if restore else None
        if in_flight is not None and in_flight.batch_id > trader.last_batch_id:
            trader._pinned = in_flight
        return trader

    @property
    def pinned_batch_id(self) -> int | None:
        """The batch in flight at the last crash, replayed with the model version it first ran with."""
        return self._pinned.batch_id if self._pinned is not None else None

    def market_state(self) -> MarketState:
        """A copy of where this trader is in the stream (see :class:`MarketState`)."""
        return MarketState(self.history.copy(), self.last_hour, self.released_until)

    def adopt_market(self, state: MarketState, last_batch_id: int) -> None:
        """Take over ``state`` as if this trader had processed the stream up to ``last_batch_id``."""
        self.history = state.history.copy()
        self.last_hour, self.released_until = state.last_hour, state.released_until
        self.last_batch_id = last_batch_id

    def commit(self) -> None:
        """Save the whole state with :attr:`last_batch_id` (the commit of a batch)."""
        self.checkpoints.save_checkpoint(self.config.trader_id, self._checkpoint())

    def _use_version(self, version: str) -> None:
        policy = self.model_source.load(version)
        if self.policy is not None and policy.spec.traded_symbol != self.policy.spec.traded_symbol:
            raise ValueError(f"model version {version} trades {policy.spec.traded_symbol}, not {self.symbol}")
        self.version, self.policy = version, policy
        self.learner = OnlineLearner(policy, self.config.online)
        self.rules = trading_rules(policy, self.config, self.limits)
        self.pending = None

    @property
    def symbol(self) -> str:
        assert self.policy is not None
        return self.policy.spec.traded_symbol

    def required_fields(self) -> dict[str, tuple[str, ...]]:
        """The optional kline columns each symbol must carry for the loaded model's features."""
        assert self.policy is not None
        return required_columns(self.policy.spec)

    @property
    def online_updates(self) -> int:
        return self.learner.updates if self.learner is not None else 0

    # --- the micro-batch ------------------------------------------------------------------------
    def process_batch(self, batch_id: int, klines: list[Kline], degraded: set[int] | None = None) -> BatchResult:
        """Process one micro-batch exactly once (see the module docstring)."""
        if batch_id <= self.last_batch_id:
            log.info("batch skipped trader_id=%s batch_id=%d committed_batch_id=%d", self.config.trader_id,
                     batch_id, self.last_batch_id)  # fmt: skip
            return BatchResult(batch_id, True, self.version, online_updates=self.online_updates)
        swapped_from = self._check_swap(batch_id)
        self.checkpoints.mark_in_flight(self.config.trader_id, batch_id, self.version)
        degraded = set(degraded or ())
        self.history.add(self._screen(batch_id, klines, degraded))
        self._last_position = None
        decisions, orders = self._decide_ready_hours(batch_id, degraded)
        self.sink.flush()
        durable_at = time.time()
        self.history.trim(self.last_hour, self._keep_hours())
        if self.last_hour is not None:
            oldest = self.last_hour - self._keep_hours() * HOUR_MS
            self.quarantined = {h: why for h, why in self.quarantined.items() if h >= oldest}
        self.last_batch_id = batch_id
        self._maybe_log_online()
        self.commit()
        waiting = tuple(self.history.hours_after(self.last_hour))
        loss = self.learner.last_loss if self.learner is not None else None
        return BatchResult(batch_id, False, self.version, tuple(decisions), tuple(orders), self.online_updates,
                           waiting, swapped_from, durable_at, self._last_position, loss)  # fmt: skip

    def _screen(self, batch_id: int, klines: list[Kline], degraded: set[int]) -> list[Kline]:
        """The klines the model can use; the others are quarantined and their hours decided degraded."""
        assert self.policy is not None
        usable = []
        for kline in klines:
            why = unusable(kline, self.policy.spec)
            if why is None:
                usable.append(kline)
            elif self.history.close(kline.symbol, kline.open_time) is None:  # not a repeat of a kept kline
                self._quarantine(batch_id, kline.open_time, kline.symbol, why)
                degraded.add(kline.open_time)
        return usable

    def _quarantine(self, batch_id: int, hour: int, symbol: str | None, why: str) -> None:
        self.quarantined[hour] = why if hour not in self.quarantined else f"{self.quarantined[hour]}; {why}"
        emit(self.alerts, quarantine_alert(self.config.trader_id, batch_id, hour, symbol, why))

    def _check_swap(self, batch_id: int) -> str | None:
        pinned, self._pinned = self._pinned, None
        self._replaying = pinned is not None and pinned.batch_id == batch_id
        if pinned is not None and pinned.batch_id == batch_id:
            wanted = pinned.model_version  # a replayed batch keeps the version it first ran with
        else:
            try:
                wanted = self.model_source.current_version()
            except KlinestreamError as exc:  # registry down or alias unset: keep trading what is loaded
                log.warning("model source unavailable trader_id=%s batch_id=%d model_version=%s error=%s",
                            self.config.trader_id, batch_id, self.version, exc)  # fmt: skip
                return None
        if wanted == self.version:
            return None
        previous = self.version
        self._use_version(wanted)
        self.swapped_from = previous
        log.info("model swap trader_id=%s batch_id=%d from_version=%s model_version=%s", self.config.trader_id,
                 batch_id, previous, wanted)  # fmt: skip
        return previous

    def _keep_hours(self) -> int:
        assert self.policy is not None
        return self.policy.history_hours + 24

    def _ready_hours(self, present: dict[int, set[str]], degraded: set[int], symbols: tuple[str, ...]) -> list[int]:
        """Hours to decide now, in order: every hour up to the latest complete or degraded hour seen."""
        complete = [h for h, have in present.items() if have.issuperset(symbols)]
        latest = max([*complete, *degraded, self.released_until or -1])
        self.released_until = latest if latest >= 0 else None
        if not present or self.released_until is None:
            return []
        start = min(present) if self.last_hour is None else self.last_hour + HOUR_MS
        return list(range(start, self.released_until + HOUR_MS, HOUR_MS))

    def _decide_ready_hours(self, batch_id: int, degraded: set[int]) -> tuple[list[DecisionRecord], list[OrderRecord]]:
        assert self.policy is not None and self.learner is not None
        spec = self.policy.spec
        present = self.history.symbols_by_hour(after=self.last_hour)
        hours = self._ready_hours(present, degraded, spec.symbols)
        decisions: list[DecisionRecord] = []
        orders: list[OrderRecord] = []
        if not hours:
            return decisions, orders
        known = self.history.klines(spec.symbols)
        absent = sorted(set(spec.symbols) - {k.symbol for k in known})
        if absent:  # no state without any history of a context symbol: passed over like the warm-up
            log.warning("no kline yet of %s: hours %d..%d passed over (warm-up) trader_id=%s batch_id=%d",
                        ",".join(absent), hours[0], hours[-1], self.config.trader_id, batch_id)  # fmt: skip
            self.last_hour = hours[-1]
            return decisions, orders
        table, rows = self.policy.feature_rows(klines_to_frame(known))
        hour_numbers = table.open_time // HOUR_MS
        fresh = table.valid & (self.learner.rows.hours[hour_numbers % self.learner.rows.capacity] != hour_numbers)
        self.learner.rows.put(hour_numbers[fresh], rows[fresh])  # rows are written once: the backtest's values
        index = {int(t): i for i, t in enumerate(table.open_time)}
        for hour in hours:
            i = index.get(hour)
            if i is None:
                break  # no kline at all at or after this hour yet
            self.last_hour = hour
            if not self.learner.rows.has_window(int(hour_numbers[i]), spec.window):
                continue  # warm-up: no full window of defined feature rows yet
            is_degraded = not present.get(hour, set()).issuperset(spec.symbols)
            decision, order = self._decide_hour(batch_id, table, i, is_degraded)
            decisions.append(decision)
            if order is not None:
                orders.append(order)
        return decisions, orders

    def _decide_hour(self, batch_id: int, table: FeatureTable, i: int, degraded: bool
                     ) -> tuple[DecisionRecord, OrderRecord | None]:  # fmt: skip
        assert self.learner is not None
        hour, price, tradable = int(table.open_time[i]), float(table.close[i]), bool(table.tradable[i])
        hour_number = hour // HOUR_MS
        equity_before = self.portfolio.equity(price)
        account = self.portfolio.account(price, self.rules, hour)
        self._complete_transition(hour_number, account, equity_before)
        q = self.learner.q_values(hour_number, account)
        if not np.isfinite(q).all():
            self._quarantine(batch_id, hour, None, "non-finite Q-values")
        tradable, degraded = tradable and hour not in self.quarantined, degraded or hour in self.quarantined
        action, greedy, explored = self.learner.act(q, tradable)
        executed = self.portfolio.executed_action(action, tradable, hour, self.rules)  # minimum holding time
        held = _HELD if executed != action else _NO_ORDER  # the trade the minimum holding time turned into hold
        if executed != action:
            action, explored = executed, False
        self.portfolio.mark(hour, price)
        done = self._order(batch_id, hour, action, price) if action else held
        order = done.order
        notional = order.filled_quantity * order.fill_price if order is not None and order.status == "filled" else 0.0
        self.pending = _Pending(hour_number, account, action, done.profit, equity_before, notional)
        decision = DecisionRecord(
            self.config.trader_id, self.symbol, hour, self.version, action, greedy, float(q[0]), float(q[1]),
            float(q[2]), price, self.learner.epsilon, explored, self.online_updates, degraded, tradable, batch_id,
            order.client_order_id if order else None, done.status, self.swapped_from, done.reason,
        )  # fmt: skip
        self.swapped_from = None
        self.sink.write_decision(decision)
        self._last_position = self._position(batch_id, hour, price)
        self.sink.write_position(self._last_position)
        log.debug("decision trader_id=%s symbol=%s open_time=%d batch_id=%d model_version=%s action=%s",
                  self.config.trader_id, self.symbol, hour, batch_id, self.version, decision.action_name)  # fmt: skip
        return decision, order

    def _complete_transition(self, hour_number: int, account: np.ndarray, equity_now: float) -> None:
        """Turn the previous hour into a transition ending at this hour's state (models/accounting.py rewards)."""
        pending, self.pending = self.pending, None
        if pending is None or self.learner is None or not self.config.online.enabled:
            return
        reward = self.portfolio.reward(self.rules, pending.profit, pending.equity_before, equity_now, pending.notional)
        self.learner.observe(pending.hour, pending.account, pending.action, reward, hour_number, account)

    def _order(self, batch_id: int, hour: int, action: int, price: float) -> _Outcome:
        """The order of ``action``, unless it cannot be one (nothing to sell, no room to buy: no order row);
        risk-checked, then sent. Returns the order's record (if any), the realised profit, status and reason."""
        side = SIDES[action]
        quantity = self.portfolio.order_quantity(side, price, self.rules)
        why_not = not_executable(side, quantity, self.portfolio.units)
        if why_not is not None:
            log.debug("not executable trader_id=%s open_time=%d side=%s reason=%s", self.config.trader_id, hour, side,
                      why_not)  # fmt: skip
            return _Outcome(None, 0.0, NOT_EXECUTABLE, why_not)
        cid = client_order_id(self.config.trader_id, self.version, self.symbol, hour)
        account = AccountView(self.portfolio.units, self.portfolio.cash, self.portfolio.equity(price),
                              self.portfolio.day_start_equity)  # fmt: skip
        killed = self.kill_switch.active()
        reason = check_order(self.limits, side, quantity, price, account, killed, self.config.fee_rate)

        def record(status: str, why: str | None, filled: float, fill_price: float, fee: float,
                   exchange_id: str | None) -> OrderRecord:  # fmt: skip
            return OrderRecord(self.config.trader_id, self.symbol, hour, cid, self.version, side, quantity,
                               price, status, why, filled, fill_price, fee, self.broker.mode, exchange_id,
                               batch_id)  # fmt: skip

        request = OrderRequest(cid, self.symbol, side, quantity, price, hour)
        sent = self.broker.lookup(request) if reason == KILL_SWITCH and self._replaying else None
        if sent is not None:  # the first attempt of this replayed batch sent it before the switch: book it
            reason = None
        if reason is not None:
            order = record("rejected", reason, 0.0, 0.0, 0.0, None)
            self.sink.write_order(order)
            return _Outcome(order, 0.0, order.status, reason)
        if sent is None:
            self.sink.write_order(record("new", None, 0.0, 0.0, 0.0, None))
            if self.broker.mode not in UNSENT_MODES:
                self.sink.flush()  # the intent is durable before a real order leaves
        fill = sent or self.broker.submit(request)
        profit = 0.0
        if fill.status == "filled":
            profit = self.portfolio.apply_fill(side, fill.filled_quantity, fill.fill_price, fill.fee, hour)
        order = record(fill.status, fill.reason, fill.filled_quantity, fill.fill_price, fill.fee,
                       fill.exchange_order_id)  # fmt: skip
        self.sink.write_order(order)
        log.info("order trader_id=%s symbol=%s open_time=%d batch_id=%d model_version=%s side=%s status=%s "
                 "client_order_id=%s", self.config.trader_id, self.symbol, hour, batch_id, self.version, side,
                 order.status, cid)  # fmt: skip
        return _Outcome(order, profit, order.status, order.reason)

    def _position(self, batch_id: int, hour: int, price: float) -> PositionRecord:
        p = self.portfolio
        return PositionRecord(self.config.trader_id, self.symbol, hour, self.version, p.units, p.cash, p.equity(price),
                              p.buy_hold_equity(price), p.realized_pnl, p.fees_paid, p.day_start_equity,
                              batch_id)  # fmt: skip

    def _maybe_log_online(self) -> None:
        every, updates = self.config.log_online_every, self.online_updates
        if every <= 0 or self.learner is None or updates // every <= self.logged_updates // every:
            return
        close = self.history.close(self.symbol, self.last_hour) if self.last_hour is not None else None
        equity = self.portfolio.equity(close) if close is not None else self.portfolio.cash
        metrics = {"online_updates": float(updates), "equity": equity, "epsilon": self.learner.epsilon}
        try:
            policy = self.learner.serving_policy({"parent_version": self.version, "online_updates": updates})
            self.online_logger.log_online(self.version, policy, metrics, updates)
        except Exception:  # best effort: trading must not stop because MLflow is down
            log.warning("could not log online weights model_version=%s online_updates=%d", self.version, updates,
                        exc_info=True)  # fmt: skip
        self.logged_updates = updates

    # --- checkpoint -----------------------------------------------------------------------------
    def _checkpoint(self) -> Checkpoint:
        assert self.learner is not None
        p = self.pending
        pending = None if p is None else [p.hour, p.account.tolist(), p.action, p.profit, p.equity_before, p.notional]
        state = {
            "trader_id": self.config.trader_id,
            "batch_id": self.last_batch_id,
            "model_version": self.version,
            "last_hour": self.last_hour,
            "released_until": self.released_until,
            "learner": self.learner.state_dict(),
            "portfolio": self.portfolio.to_dict(),
            "pending": pending,
            "history": self.history.to_state(),
            "swapped_from": self.swapped_from,
            "logged_updates": self.logged_updates,
            "quarantined": {str(h): why for h, why in self.quarantined.items()},
        }
        return Checkpoint(self.last_batch_id, self.version, self.online_updates, encode_state(state))

    def _restore(self, checkpoint: Checkpoint) -> None:
        state = decode_state(checkpoint.blob)
        self._use_version(str(state["model_version"]))
        assert self.learner is not None
        self.learner.load_state_dict(state["learner"])
        self.portfolio = Portfolio.from_dict(state["portfolio"])
        pending = state["pending"]
        if pending is not None:
            account = np.asarray(pending[1], dtype=np.float32)
            notional = float(pending[5]) if len(pending) > 5 else 0.0  # absent before the turnover penalty
            self.pending = _Pending(int(pending[0]), account, int(pending[2]), float(pending[3]), float(pending[4]),
                                    notional)  # fmt: skip
        self.history = History.from_state(state["history"])
        self.last_hour = None if state["last_hour"] is None else int(state["last_hour"])
        self.released_until = None if state["released_until"] is None else int(state["released_until"])
        self.last_batch_id = int(state["batch_id"])
        self.swapped_from = state["swapped_from"]
        self.logged_updates = int(state["logged_updates"])
        self.quarantined = {int(h): str(why) for h, why in state.get("quarantined", {}).items()}
        log.info("trader restored trader_id=%s batch_id=%d model_version=%s online_updates=%d",
                 self.config.trader_id, self.last_batch_id, self.version, self.online_updates)  # fmt: skip


def trading_rules(policy: Policy, config: TraderConfig, limits: RiskLimits) -> TradingRules:
    """The rules of the live account: the policy's training ``env_config`` (models.config.EnvConfig) with
    the trader's accounting / reward overrides, fee and slippage, order size and position cap."""
    env = policy.env_config
    overrides: dict[str, Any] = {"fee_rate": config.fee_rate, "slippage_bps": config.slippage_bps}
    if config.accounting is not None:
        overrides["accounting"] = config.accounting
    if config.reward is not None:
        overrides["reward"] = config.reward
    env = replace(env, **overrides)
    if env.accounting == "portfolio" and env.reward == "reference":
        env = replace(env, reward="log_return")  # the reference reward needs unit accounting
    check_rules(env)
    return TradingRules(env, config.order_units, limits.max_position_units)
