"""The trader's account (FIFO lots, fees, day start, account features) and its checkpoint files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adapters.checkpoint_files import FileCheckpointStore
from models.accounting import TradingRules
from models.checkpoint import Checkpoint, decode_state, encode_state
from models.config import EnvConfig
from models.env import VectorTradingEnv
from streaming.portfolio import DAY_MS, Portfolio


def test_fifo_lots_realise_profit_net_of_fees() -> None:
    account = Portfolio.start(100_000.0)
    account.apply_fill("BUY", 1.0, 100.0, 0.1)
    account.apply_fill("BUY", 1.0, 200.0, 0.2)
    profit = account.apply_fill("SELL", 1.0, 150.0, 0.15)
    assert profit == pytest.approx(150.0 - 0.15 - 100.0 - 0.1)  # the oldest lot is sold first
    assert account.units == 1.0 and account.lots == [(1.0, 200.0, pytest.approx(0.2))]
    assert account.cash == pytest.approx(100_000.0 - 100.1 - 200.2 + 149.85)
    assert account.fees_paid == pytest.approx(0.45)


def test_the_first_hour_of_a_utc_day_fixes_the_day_start_equity() -> None:
    account = Portfolio.start(1_000.0)
    account.apply_fill("BUY", 1.0, 100.0, 0.0)
    day = 19_358 * DAY_MS
    account.mark(day + 5 * 3_600_000, 110.0)
    assert account.day_start_equity == pytest.approx(1_010.0) and account.buy_hold_units == pytest.approx(1_000 / 110)
    account.mark(day + 6 * 3_600_000, 90.0)
    assert account.day_start_equity == pytest.approx(1_010.0)
    account.mark(day + DAY_MS, 95.0)
    assert account.day_start_equity == pytest.approx(995.0)


def test_account_features_match_the_backtest_environment_in_unit_accounting() -> None:
    close = np.array([100.0, 120.0, 90.0, 110.0, 130.0])
    env = VectorTradingEnv(close, np.ones(5, bool), EnvConfig(capital=250.0), 1, np.array([0]), auto_reset=False)
    env.reset(np.array([0]), np.array([4]))
    account = Portfolio.start(250.0)
    sizing = TradingRules(EnvConfig(accounting="unit"), order_units=1.0, max_units=math.inf)
    for row, action in enumerate([1, 1, 2, 1]):
        price = close[row]
        np.testing.assert_allclose(account.account(price, sizing), env.account()[0], rtol=1e-6)
        side = {1: "BUY", 2: "SELL"}[action]
        if (side == "BUY" and account.cash >= price) or (side == "SELL" and account.units > 0):
            account.apply_fill(side, account.order_quantity(side, price, sizing), price, 0.0)
        env.step(np.array([action]))
    np.testing.assert_allclose(account.account(close[4], sizing), env.account()[0], rtol=1e-6)


def test_portfolio_accounting_sizes_orders_as_fractions_of_equity() -> None:
    env = EnvConfig(accounting="portfolio", reward="log_return", position_step=0.25, max_position=0.5, fee_rate=0.0)
    sizing = TradingRules(env, order_units=1.0, max_units=math.inf)
    account = Portfolio.start(1_000.0)
    assert account.order_quantity("BUY", 100.0, sizing) == pytest.approx(2.5)
    account.apply_fill("BUY", 5.0, 100.0, 0.0)  # half the equity: at the maximum
    assert account.order_quantity("BUY", 100.0, sizing) == 0.0
    assert account.order_quantity("SELL", 100.0, sizing) == pytest.approx(2.5)


def test_portfolio_state_round_trips_through_a_dict() -> None:
    account = Portfolio.start(1_000.0)
    account.apply_fill("BUY", 2.0, 100.0, 0.2)
    account.mark(3 * DAY_MS, 105.0)
    assert Portfolio.from_dict(account.to_dict()) == account


def test_file_checkpoint_store_commits_atomically_and_detects_corruption(tmp_path) -> None:
    store = FileCheckpointStore(tmp_path)
    assert store.load_checkpoint("t") is None and store.in_flight("t") is None
    blob = encode_state({"weights": np.arange(3).tolist()})
    store.mark_in_flight("t", 4, "2")
    store.save_checkpoint("t", Checkpoint(3, "2", 17, blob))
    store.save_checkpoint("t", Checkpoint(4, "2", 18, blob))
    loaded = store.load_checkpoint("t")
    assert loaded == Checkpoint(4, "2", 18, blob) and decode_state(loaded.blob)["weights"] == [0, 1, 2]
    assert store.in_flight("t").batch_id == 4  # type: ignore[union-attr]
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["checkpoint.json", "in_flight.json", "state-4.pt"]
    (tmp_path / "t" / "state-4.pt").write_bytes(blob[:-1] + b"x")
    with pytest.raises(ValueError, match="corrupt"):
        store.load_checkpoint("t")
