"""The online trader on the real Cassandra: idempotent schema, replays that write nothing twice,
positions that reconcile with orders, a restart from the Cassandra checkpoint, and an outage that
delays but loses nothing."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
import torch

from adapters.cassandra.checkpoints import CassandraCheckpointStore
from adapters.cassandra.controls import CassandraControls
from adapters.cassandra.reader import TradeReader
from adapters.cassandra.session import TABLES, CassandraSession, connect_cluster, ensure_schema
from adapters.cassandra.trade_sink import CassandraTradeSink
from models.broker import PaperBroker
from models.credentials import CassandraRole
from models.kline import HOUR_MS, Kline
from models.records import NOT_EXECUTABLE
from models.settings import Settings
from streaming.online_learner import OnlineConfig
from streaming.online_trader import OnlineTrader, TraderConfig
from streaming.risk import RiskLimits
from tests.integration.tcp_proxy import TcpProxy
from tests.trader_fakes import StaticModelSource, hourly_batches, make_policy, market, to_klines

pytestmark = pytest.mark.integration

LIMITS = RiskLimits(max_position_units=5.0, max_order_notional=1e6, daily_loss_limit=1e6)
ONLINE = OnlineConfig(enabled=True, epsilon=0.1, batch_size=8, learn_starts=8, target_sync_every=5, buffer_size=500)
TRADER = "paper-BTCUSDT"


@pytest.fixture(scope="module")
def market_klines() -> tuple[object, list[Kline]]:
    frame = market(33 + 96, seed=3)
    return frame, to_klines(frame)


@dataclass(frozen=True)
class Cassandra:
    """The Cassandra adapter's roles on one connection, as streaming/live_trader.py assembles them."""

    db: CassandraSession
    sink: CassandraTradeSink
    checkpoints: CassandraCheckpointStore
    controls: CassandraControls
    reader: TradeReader

    @classmethod
    def connect(cls, settings: Settings, max_outage_seconds: float) -> Cassandra:
        db = CassandraSession.connect(settings, CassandraRole.STREAM, max_outage_seconds)
        return cls(db, CassandraTradeSink(db), CassandraCheckpointStore(db), CassandraControls(db), TradeReader(db))


def trader_on(cassandra: Cassandra, policy: object, trader_id: str = TRADER) -> OnlineTrader:
    config = TraderConfig(trader_id=trader_id, fee_rate=0.001, online=ONLINE, control_ttl_seconds=0.0)
    source = StaticModelSource({"1": policy}, "1")  # type: ignore[dict-item]
    return OnlineTrader.start(config, source, PaperBroker(0.001, 5.0), cassandra.sink, cassandra.checkpoints, LIMITS,
                              controls=cassandra.controls.for_trader(trader_id))  # fmt: skip


def test_schema_creation_is_idempotent(module_keyspace_settings: Settings) -> None:
    cluster, session = connect_cluster(module_keyspace_settings, CassandraRole.ADMIN, max_outage_seconds=60)
    try:
        ensure_schema(session, module_keyspace_settings.cassandra_keyspace)
        ensure_schema(session, module_keyspace_settings.cassandra_keyspace)
        rows = session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
            (module_keyspace_settings.cassandra_keyspace,),
        )
        assert sorted(r.table_name for r in rows) == sorted(TABLES)
    finally:
        cluster.shutdown()


def test_replayed_batches_write_nothing_twice_and_positions_reconcile_with_orders(
    module_keyspace_settings: Settings, market_klines
) -> None:
    frame, klines = market_klines
    torch.set_num_threads(1)
    policy = make_policy(frame, seed=8)
    batches = hourly_batches(klines, 4)
    cassandra = Cassandra.connect(module_keyspace_settings, max_outage_seconds=60)
    try:
        trader = trader_on(cassandra, policy, "replay-BTCUSDT")
        for batch_id, batch in enumerate(batches[:20]):
            trader.process_batch(batch_id, batch)
        committed = cassandra.checkpoints.load_checkpoint("replay-BTCUSDT")
        assert committed is not None and committed.batch_id == 19
        trader.process_batch(20, batches[20])  # rows of batch 20 are written; the process dies before ...
        cassandra.checkpoints.save_checkpoint("replay-BTCUSDT", committed)  # ... its commit (the pointer is back on 19)
        restarted = trader_on(cassandra, policy, "replay-BTCUSDT")
        assert restarted.last_batch_id == 19 and restarted.online_updates == committed.online_updates
        for batch_id, batch in enumerate(batches[19:], start=19):  # 19 is skipped, 20 is replayed
            restarted.process_batch(batch_id, batch)

        decisions = cassandra.reader.read("decisions", "replay-BTCUSDT", "BTCUSDT")
        orders = cassandra.reader.read("orders", "replay-BTCUSDT", "BTCUSDT")
        positions = cassandra.reader.read("positions", "replay-BTCUSDT", "BTCUSDT")
        hours = sorted({k.open_time for k in klines})[33:]
        assert [d["open_time"] for d in decisions] == hours  # one row per hour: nothing twice
        assert [p["open_time"] for p in positions] == hours
        # every buy or sell is one order, except those that could not be orders (nothing held, no room)
        ordered = [d for d in decisions if d["action"] != 0 and d["order_status"] != NOT_EXECUTABLE]
        assert len({o["client_order_id"] for o in orders}) == len(orders) == len(ordered)
        assert all(o["status"] in ("filled", "rejected") for o in orders)
        filled = [o for o in orders if o["status"] == "filled"]
        assert len(filled) > 5
        units = sum(o["filled_quantity"] * (1 if o["side"] == "BUY" else -1) for o in filled)
        sign = {"BUY": -1.0, "SELL": 1.0}
        cash = 100_000.0 + sum(sign[o["side"]] * o["filled_quantity"] * o["fill_price"] - o["fee"] for o in filled)
        last = positions[-1]
        assert last["units"] == pytest.approx(units) and last["cash"] == pytest.approx(cash)
        assert max(p["units"] for p in positions) <= LIMITS.max_position_units
    finally:
        cassandra.db.close()


def test_kill_switch_row_stops_orders_at_once_while_decisions_go_on(
    module_keyspace_settings: Settings, market_klines
) -> None:
    frame, klines = market_klines
    cassandra = Cassandra.connect(module_keyspace_settings, max_outage_seconds=60)
    try:
        trader = trader_on(cassandra, make_policy(frame, seed=8), "kill-BTCUSDT")
        batches = hourly_batches(klines, 12)
        for batch_id, batch in enumerate(batches[:4]):
            trader.process_batch(batch_id, batch)
        cassandra.controls.set_kill_switch(True, "integration test", trader_id="kill-BTCUSDT")
        result = trader.process_batch(4, batches[4])
        assert len(result.decisions) == 12
        assert result.orders and all(o.status == "rejected" and o.reason == "kill_switch" for o in result.orders)
        cassandra.controls.set_kill_switch(False, "integration test done", trader_id="kill-BTCUSDT")
        assert not cassandra.controls.kill_switch_active("kill-BTCUSDT")
    finally:
        cassandra.db.close()


@pytest.mark.slow
def test_a_30_second_cassandra_outage_delays_but_loses_nothing(
    module_keyspace_settings: Settings, market_klines
) -> None:
    frame, klines = market_klines
    host = module_keyspace_settings.cassandra_hosts[0]
    proxy = TcpProxy((host, module_keyspace_settings.cassandra_port)).start()
    through_proxy = module_keyspace_settings.model_copy(
        update={"cassandra_hosts": ("127.0.0.1",), "cassandra_port": proxy.port}
    )
    cassandra = Cassandra.connect(through_proxy, max_outage_seconds=120)
    try:
        trader = trader_on(cassandra, make_policy(frame, seed=8), "outage-BTCUSDT")
        batches = hourly_batches(klines, 6)
        trader.process_batch(0, batches[0])
        trader.process_batch(1, batches[1])
        proxy.stop()
        threading.Timer(30.0, proxy.start).start()
        started = time.monotonic()
        for batch_id, batch in enumerate(batches[2:], start=2):
            trader.process_batch(batch_id, batch)
        assert time.monotonic() - started >= 29.0  # the first write waited for Cassandra to come back
        hours = sorted({k.open_time for k in klines})[33:]
        decisions = cassandra.reader.read("decisions", "outage-BTCUSDT", "BTCUSDT")
        assert [d["open_time"] for d in decisions] == hours
        checkpoint = cassandra.checkpoints.load_checkpoint("outage-BTCUSDT")
        assert checkpoint is not None and checkpoint.batch_id == len(batches) - 1
        assert hours[-1] - hours[0] == (len(hours) - 1) * HOUR_MS
    finally:
        cassandra.db.close()
        proxy.stop()


def test_buffered_rows_are_durable_after_flush_in_batches_and_two_writes_to_one_key_merge(
    module_keyspace_settings: Settings,
) -> None:
    from models.records import DecisionRecord, OrderRecord

    cassandra = Cassandra.connect(module_keyspace_settings, max_outage_seconds=60)
    sink, reader = cassandra.sink, cassandra.reader
    trader, t0 = "flush-test", 1_672_531_200_000
    try:
        for hour in range(40):  # 40 rows: three single-partition batches of at most 16
            sink.write_decision(DecisionRecord(trader, "BTCUSDT", t0 + hour * HOUR_MS, "1", 0, 0, 0.0, 0.0, 0.0,
                                               100.0 + hour, 0.0, False, hour, False, True, 7, None, None))  # fmt: skip
        order = OrderRecord(trader, "BTCUSDT", t0, "cid-1", "1", "BUY", 1.0, 100.0, "new", None, 0.0, 0.0, 0.0,
                            "paper", None, 7)  # fmt: skip
        sink.write_order(order)
        sink.write_order(OrderRecord(*[*order.__dict__.values()][:8], "filled", None, 1.0, 100.5, 0.1, "paper",
                                     "x-9", 7))  # fmt: skip
        assert sink.pending_rows == 41 and reader.read("decisions", trader, "BTCUSDT") == []  # nothing before flush
        sink.flush()
        assert sink.pending_rows == 0
        decisions = reader.read("decisions", trader, "BTCUSDT")
        assert [d["price"] for d in decisions] == [100.0 + hour for hour in range(40)]
        (stored,) = reader.read("orders", trader, "BTCUSDT")
        assert (stored["status"], stored["fill_price"], stored["exchange_order_id"]) == ("filled", 100.5, "x-9")
    finally:
        cassandra.db.close()
