"""The live portfolio and the vectorised environment trade by the same rules (models/accounting.py).

On random action sequences over synthetic prices, a live :class:`~streaming.portfolio.Portfolio` driven
as the online trader drives it (rules derived from the policy's ``env_config`` → ``order_quantity`` →
executable? → risk check → ``PaperBroker.submit`` → ``apply_fill``; rewards by ``Portfolio.reward``) and a one-env
:class:`~models.env.VectorTradingEnv` compute, at every step, the same fills (quantities, prices),
fees, rewards and account features, for every reward kind and both accountings: unit accounting with
zero fees (as the environment defines it) and portfolio accounting with fees and slippage, and for the
turnover rules (exposure steps of ½ and 1, a minimum holding time, a turnover penalty): the same
actions execute as hold on both sides and the same fills follow.

With zero fees the two sides agree bit for bit. With fees the live account books what the broker
filled (quantity × fill price) and the environment what it spent, which differ in the last bits only,
so the portfolio cases compare to 1e-9 relative: any change of a rule on one side (a step, a
threshold, a fee) moves a figure by far more. The last tests pin the rules themselves with numbers
worked out by hand, so that a change of the shared rule is seen too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.accounting import BUY, HOLD, SELL, TradingRules, market_fill, step_reward
from models.broker import OrderRequest, PaperBroker
from models.config import ACCOUNTINGS, REWARD_KINDS, EnvConfig, config_from_dict, config_to_dict
from models.env import VectorTradingEnv
from models.kline import HOUR_MS
from models.records import SIDES
from streaming.online_trader import TraderConfig, trading_rules
from streaming.portfolio import Portfolio
from streaming.risk import AccountView, RiskLimits, check_order, not_executable

STEPS = 400
SEEDS = (0, 1, 2, 3)
CAPITAL = 100_000.0
LIMITS = RiskLimits(max_position_units=math.inf, max_order_notional=math.inf, daily_loss_limit=math.inf)
FEES = {"fee_rate": 0.001, "slippage_bps": 5.0, "position_step": 0.3, "max_position": 0.8, "drawdown_penalty": 1.5}
CASES = [pytest.param(EnvConfig(accounting="unit", reward=r), id=f"unit-{r}") for r in REWARD_KINDS] + [
    pytest.param(EnvConfig(accounting="portfolio", reward=r, **FEES), id=f"portfolio-{r}")  # type: ignore[arg-type]
    for r in REWARD_KINDS
    if r != "reference"  # the reference reward needs unit accounting
]
#: The turnover rules a fee payer trades by, with fees and slippage: target exposures {0, ½, 1} or {0, 1} with
#: the same three actions, a minimum holding time, a turnover penalty, and all of them at once.
TURNOVER = {"fee_rate": 0.001, "slippage_bps": 5.0}
ALL_RULES = {"position_step": 0.5, "min_hold_hours": 6, "turnover_penalty": 0.2}
TURNOVER_CASES = [
    pytest.param(EnvConfig(accounting="portfolio", reward="risk", position_step=0.5, **TURNOVER), id="step-half"),  # type: ignore[arg-type]
    pytest.param(EnvConfig(accounting="portfolio", reward="risk", position_step=1.0, **TURNOVER), id="step-one"),  # type: ignore[arg-type]
    pytest.param(EnvConfig(accounting="portfolio", reward="log_return", min_hold_hours=4, **TURNOVER), id="hold-4h"),  # type: ignore[arg-type]
    pytest.param(EnvConfig(accounting="unit", reward="log_return", min_hold_hours=3), id="unit-hold-3h"),
    pytest.param(EnvConfig(accounting="portfolio", reward="risk", turnover_penalty=0.5, **TURNOVER), id="penalty"),  # type: ignore[arg-type]
    pytest.param(EnvConfig(accounting="portfolio", reward="risk", **ALL_RULES, **TURNOVER), id="all-rules"),  # type: ignore[arg-type]
]


class _PolicyMetadata:
    """The part of a Policy that the trader's rules are derived from."""

    def __init__(self, env: EnvConfig) -> None:
        self.metadata = {"env_config": config_to_dict(env)}
        self.env_config = config_from_dict(EnvConfig, self.metadata["env_config"])  # as Policy.env_config reads it


def _prices(seed: int, grid: bool) -> np.ndarray:
    """Closes around 20,000 (a few units fit in the capital): a random walk, or on a grid of whole
    thousands, where the cash of unit accounting often equals a close exactly (the edge of a buy)."""
    rng = np.random.default_rng(seed)
    if grid:
        return 1_000.0 * np.clip(20 + np.cumsum(rng.integers(-3, 4, STEPS + 1)), 5, 60)
    return 20_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, STEPS + 1)))


def _actions(seed: int) -> np.ndarray:
    return np.random.default_rng(1_000 + seed).choice([HOLD, BUY, SELL], size=STEPS, p=[0.2, 0.45, 0.35])


def _live_order(account: Portfolio, rules: TradingRules, broker: PaperBroker, action: int, price: float,
                step: int) -> tuple[float, float, float, float]:  # fmt: skip
    """The trader's order path for one decision at the hour ``step``: the action as executed (the minimum
    holding time), then (signed filled quantity, fill price, fee, realised profit)."""
    action = account.executed_action(action, True, step * HOUR_MS, rules)
    if action == HOLD:
        return 0.0, price, 0.0, 0.0
    side = SIDES[action]
    quantity = account.order_quantity(side, price, rules)
    if not_executable(side, quantity, account.units) is not None:
        return 0.0, price, 0.0, 0.0  # nothing to sell, no room to buy: no order
    view = AccountView(account.units, account.cash, account.equity(price), account.day_start_equity)
    if check_order(LIMITS, side, quantity, price, view, False, rules.env.fee_rate) is not None:
        return 0.0, price, 0.0, 0.0  # rejected: nothing sent
    fill = broker.submit(OrderRequest(f"cid-{step}", "BTCUSDT", side, quantity, price, step))
    profit = account.apply_fill(side, fill.filled_quantity, fill.fill_price, fill.fee, step * HOUR_MS)
    sign = 1.0 if side == "BUY" else -1.0
    return sign * fill.filled_quantity, fill.fill_price, fill.fee, profit


def _run(config: EnvConfig, seed: int) -> dict[str, np.ndarray]:
    """Both sides over the same closes and actions; every compared figure, per step, live and env."""
    close, actions = _prices(seed, grid=config.accounting == "unit"), _actions(seed)
    env = VectorTradingEnv(close, np.ones(len(close), bool), config, 1, np.array([0]), auto_reset=False)
    env.reset(np.array([0]), np.array([STEPS]))
    trader = TraderConfig(capital=CAPITAL, fee_rate=config.fee_rate, slippage_bps=config.slippage_bps)
    rules = trading_rules(_PolicyMetadata(config), trader, LIMITS)  # type: ignore[arg-type]
    account, broker = Portfolio.start(CAPITAL), PaperBroker(config.fee_rate, config.slippage_bps)
    names = ("account", "quantity", "price", "fee", "reward", "equity")
    live: dict[str, list] = {name: [] for name in names}
    sim: dict[str, list] = {name: [] for name in names}
    for step, action in enumerate(actions):
        price = float(close[step])
        live["account"].append(account.account(price, rules, step * HOUR_MS))
        sim["account"].append(env.account()[0])
        equity_before = account.equity(price)
        quantity, fill_price, fee, profit = _live_order(account, rules, broker, int(action), price, step)
        result = env.step(np.array([action]))
        fills = env.last_fills
        for name, mine, theirs in (("quantity", quantity, fills.quantity), ("price", fill_price, fills.price),
                                   ("fee", fee, fills.fee)):  # fmt: skip
            live[name].append(mine)
            sim[name].append(theirs[0])
        next_price = float(close[step + 1])
        notional = abs(quantity) * fill_price
        live["reward"].append(account.reward(rules, profit, equity_before, account.equity(next_price), notional))
        sim["reward"].append(result.rewards[0])
        live["equity"].append(account.equity(next_price))
        sim["equity"].append(env.equity()[0])
    live["account"].append(account.account(float(close[STEPS]), rules, STEPS * HOUR_MS))
    sim["account"].append(env.account()[0])
    return {f"{side}.{name}": np.asarray(values[name]) for side, values in (("live", live), ("env", sim))
            for name in names}  # fmt: skip


@pytest.mark.parametrize("config", CASES + TURNOVER_CASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_live_portfolio_and_environment_fill_charge_reward_and_feature_alike(config: EnvConfig, seed: int) -> None:
    got = _run(config, seed)
    quantity = got["env.quantity"]
    assert (quantity > 0).sum() >= 20 and (quantity < 0).sum() >= 20, "too few fills: the test would prove little"
    if config.accounting == "portfolio":
        assert got["env.fee"].sum() > 0 and (got["env.price"] != _prices(seed, grid=False)[:STEPS]).any()
    for name in ("quantity", "price", "fee", "equity", "account"):
        live, env = got[f"live.{name}"], got[f"env.{name}"]
        if config.fee_rate == 0.0 and config.slippage_bps == 0.0:
            np.testing.assert_array_equal(live, env, err_msg=name)
        elif name == "account":  # float32 features: one float32 step at most
            np.testing.assert_allclose(live, env, rtol=1e-6, atol=1e-7, err_msg=name)
        else:
            np.testing.assert_allclose(live, env, rtol=1e-9, atol=1e-12, err_msg=name)
    rewards_live, rewards_env = got["live.reward"].astype(np.float32), got["env.reward"]
    if config.fee_rate == 0.0:
        np.testing.assert_array_equal(rewards_live, rewards_env)
    else:
        np.testing.assert_allclose(rewards_live, rewards_env, rtol=1e-5, atol=1e-9)
    assert np.abs(rewards_env).sum() > 0


def test_every_accounting_and_reward_kind_is_covered() -> None:
    covered = {(p.values[0].accounting, p.values[0].reward) for p in CASES}  # type: ignore[union-attr]
    assert covered == {(a, r) for a in ACCOUNTINGS for r in REWARD_KINDS} - {("portfolio", "reference")}


# --- the shared rules, pinned by hand-worked numbers -----------------------------------------------
PORTFOLIO = EnvConfig(accounting="portfolio", reward="risk", fee_rate=0.001, slippage_bps=10.0, drawdown_penalty=2.0)


def test_a_portfolio_buy_spends_a_step_of_equity_and_pays_the_fee_at_the_slipped_price() -> None:
    rules = TradingRules(PORTFOLIO, 1.0, math.inf)
    account = Portfolio.start(1_000.0)
    quantity = account.order_quantity("BUY", 100.0, rules)
    assert quantity == pytest.approx(200.0 / 100.1)  # 0.2 of the equity at the close + 10 bps
    price, fee = market_fill("BUY", quantity, 100.0, PORTFOLIO.fee_rate, PORTFOLIO.slippage_bps)
    assert (price, fee) == (pytest.approx(100.1), pytest.approx(0.2))  # 0.1% of the 200 spent
    account.apply_fill("BUY", quantity, price, fee)
    assert account.cash == pytest.approx(1_000.0 - 200.0 - 0.2)


def test_a_portfolio_sell_returns_a_step_or_everything_when_less_than_half_a_step_would_remain() -> None:
    rules = TradingRules(PORTFOLIO, 1.0, math.inf)
    account = Portfolio(capital=1_000.0, units=4.0, cash=600.0, peak=1_000.0)  # 40% of the equity held
    assert account.order_quantity("SELL", 100.0, rules) == pytest.approx(2.0)  # one step: 200 of 1,000
    account.units, account.cash = 2.9, 710.0  # 29%: a step would leave 9% < half a step
    assert account.order_quantity("SELL", 100.0, rules) == pytest.approx(2.9)
    assert market_fill("SELL", 2.0, 100.0, 0.001, 10.0) == (pytest.approx(99.9), pytest.approx(0.1998))


def test_the_reward_kinds_by_hand() -> None:
    unit = EnvConfig()
    assert step_reward(unit, -5.0, 100.0, 90.0, 100.0, 0.0)[0] == 0.0  # a losing sell earns nothing
    assert step_reward(unit, 7.0, 100.0, 90.0, 100.0, 0.0)[0] == 7.0
    log_return = EnvConfig(accounting="portfolio", reward="log_return")
    assert step_reward(log_return, 0.0, 100.0, 110.0, 100.0, 0.0)[0] == pytest.approx(math.log(1.1))
    reward, peak, drawdown = step_reward(PORTFOLIO, 0.0, 110.0, 99.0, 110.0, 0.05)  # drawdown 5% → 10%
    assert (peak, drawdown) == (110.0, pytest.approx(0.1))
    assert reward == pytest.approx(math.log(0.9) - 2.0 * 0.05)


def test_a_trade_within_the_minimum_holding_time_executes_as_hold_in_the_env_and_the_live_account() -> None:
    config = EnvConfig(accounting="portfolio", reward="log_return", position_step=1.0, min_hold_hours=3)
    close = np.full(8, 100.0)
    env = VectorTradingEnv(close, np.ones(8, bool), config, 1, np.array([0]), auto_reset=False)
    env.reset(np.array([0]), np.array([7]))
    rules = TradingRules(config, 1.0, math.inf)
    account = Portfolio.start(CAPITAL)
    requested = [BUY, SELL, SELL, SELL, BUY, HOLD, BUY]  # the sell at hour 3 is the first allowed after the buy
    executed_env, executed_live, can_buy = [], [], []
    for hour, action in enumerate(requested):
        can_buy.append(float(env.account()[0, 2]))
        env.step(np.array([action]))
        executed_env.append(int(env.last_actions[0]))
        done = account.executed_action(action, True, hour * HOUR_MS, rules)
        executed_live.append(done)
        if done != HOLD:
            side = SIDES[done]
            quantity = account.order_quantity(side, 100.0, rules)
            account.apply_fill(side, quantity, 100.0, 0.0, hour * HOUR_MS)
    assert executed_env == executed_live == [BUY, HOLD, HOLD, SELL, HOLD, HOLD, BUY]
    assert can_buy == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]  # "a buy would execute" knows the lock
    assert account.to_dict()["last_trade_hour"] == 6 * HOUR_MS
    assert Portfolio.from_dict(account.to_dict()).hours_since_trade(9 * HOUR_MS) == 3  # checkpointed


def test_the_turnover_penalty_by_hand() -> None:
    config = EnvConfig(accounting="portfolio", reward="risk", turnover_penalty=0.5, drawdown_penalty=2.0)
    reward, _, _ = step_reward(config, 0.0, 100.0, 99.0, 100.0, 0.0, traded=0.2)  # traded 20% of the equity
    assert reward == pytest.approx(math.log(0.99) - 0.5 * 0.2 - 2.0 * 0.01)
    account = Portfolio.start(1_000.0)
    assert account.reward(TradingRules(config, 1.0, math.inf), 0.0, 1_000.0, 1_000.0, 500.0) == pytest.approx(-0.25)


def test_rules_that_cannot_work_are_refused() -> None:
    from models.accounting import check_rules

    for bad in (EnvConfig(position_step=0.0), EnvConfig(accounting="portfolio", reward="risk", max_position=1.5),
                EnvConfig(min_hold_hours=-1), EnvConfig(turnover_penalty=0.1)):  # fmt: skip
        with pytest.raises(ValueError):
            check_rules(bad)
