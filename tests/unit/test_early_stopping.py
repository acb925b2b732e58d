"""Early stopping on a purged validation block, and training the options end to end (n-step, dueling,
served ensembles) through the one trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.config import AgentConfig, EnvConfig, TrainConfig
from models.ensemble import EnsembleAgent
from models.env import BUY, HOLD, SELL
from models.kline import HOUR_MS
from models.networks import EnsembleNetwork
from models.synthetic import START_MS, synthetic_klines
from models.time_range import TimeRange
from pipelines.dataset import MarketDataset, build_dataset
from pipelines.early_stopping import DAY_MS, EarlyStopping, split_validation
from pipelines.evaluate import policy_decider, run_backtest
from pipelines.train import member_seeds, train_ensemble

torch.set_num_threads(1)
DAYS = 30
ENV = EnvConfig(accounting="portfolio", reward="risk", fee_rate=0.001, episode_hours=48)


@pytest.fixture(scope="module")
def market() -> tuple[object, MarketDataset, TimeRange]:
    klines = synthetic_klines(24 * DAYS, seed=7, drift_per_hour=0.0003)
    train = TimeRange(START_MS, START_MS + 24 * DAYS * HOUR_MS)
    return klines, build_dataset(klines, train), train


def test_the_validation_block_is_the_last_days_after_an_embargo(market) -> None:
    _, dataset, train = market
    split = split_validation(dataset, train, TrainConfig(validation_days=5))
    assert split is not None and split_validation(dataset, train, TrainConfig()) is None
    assert split.validation.end_ms == train.end_ms and split.validation.start_ms == train.end_ms - 5 * DAY_MS
    embargo = (split.validation.start_ms - split.fit.end_ms) // HOUR_MS
    assert embargo == dataset.spec.history_hours + 1  # no validation window reaches a fit hour's reward
    first_state = dataset.table.open_time[split.rows[0]]
    assert first_state >= split.validation.start_ms and np.all(np.diff(split.rows) == 1)
    assert dataset.table.open_time[dataset.range_rows(split.fit)[-1]] < split.validation.start_ms - embargo * HOUR_MS


def _always(agent: EnsembleAgent, actions: list[int]) -> None:
    """Make member k's policy net always choose ``actions[k]`` (last layer: no weight, a one-hot bias)."""
    with torch.no_grad():
        weight, bias = list(agent.policy_net.parameters())[-2:]
        weight.zero_()
        bias.copy_(torch.nn.functional.one_hot(torch.tensor(actions), 3).float() * 10.0)


def test_each_member_keeps_the_weights_of_its_best_validation(market) -> None:
    _, dataset, train = market
    split = split_validation(dataset, train, TrainConfig(validation_days=7))
    assert split is not None
    agent = EnsembleAgent(AgentConfig(variant="linear"), dataset.spec.window, dataset.spec.n_features,
                          dataset.spec.n_account, "cpu", seeds=(0, 1))  # fmt: skip
    agent.attach_states(torch.from_numpy(dataset.windows(upto=int(split.rows[-1]))))
    stopper = EarlyStopping(agent, dataset, split, ENV, patience=2)
    plans = [[HOLD, BUY], [BUY, SELL], [SELL, SELL]]  # member 0: hold, buy, sell; member 1: buy, sell, sell
    scores = []
    for plan in plans:
        _always(agent, plan)
        scores.append(stopper.validate())
    scores_by_member = np.array(scores).T
    assert scores_by_member[0, 0] == 0.0 and scores_by_member[0, 2] == 0.0  # holding cash, selling nothing
    assert scores_by_member[0, 1] != 0.0, "buy-and-hold on the validation block must move the equity"
    stopper.restore_best()
    chosen = [plans[int(np.argmax(scores_by_member[k]))][k] for k in range(2)]  # the first best wins a tie
    bias = list(agent.policy_net.parameters())[-1].detach()
    assert bias.argmax(dim=1).tolist() == chosen
    np.testing.assert_allclose(stopper.scores(), scores_by_member.max(axis=1))
    assert stopper.should_stop == (min(3 - 1 - int(np.argmax(s)) for s in scores_by_member) >= 2)


def test_training_with_early_stopping_serves_its_best_validated_weights(market) -> None:
    klines, dataset, train = market
    agent = AgentConfig(variant="linear", batch_size=64, target_sync_every=5, reward_scale=100.0)
    config = TrainConfig(n_envs=4, total_env_steps=4 * 400, learning_starts=64, threads=1, validation_days=5,
                         validation_every=25, patience=3)  # fmt: skip
    result = train_ensemble(dataset, train, agent, ENV, config, seeds=(3,))[0]
    summary = result.policy.metadata["early_stopping"]
    assert summary["validations"] >= 2
    assert result.env_steps < config.total_env_steps  # patience 3 stopped it (or it would be 1,600)
    split = split_validation(dataset, train, config)
    assert split is not None
    rows, decide, table = policy_decider(result.policy, klines, split.validation)  # type: ignore[arg-type]
    served = run_backtest(table.close, table.tradable, rows, decide, ENV).metrics[0].total_return
    assert served == pytest.approx(summary["best_return"][0], abs=1e-9)


def test_a_served_ensemble_of_n_step_dueling_members_trains_as_its_seeds_networks(market) -> None:
    _, dataset, train = market
    agent = AgentConfig(variant="lstm", batch_size=32, target_sync_every=5, dueling=True, n_step=3,
                        ensemble_members=3, ensemble_rule="vote")  # fmt: skip
    config = TrainConfig(n_envs=2, total_env_steps=2 * 60, learning_starts=20, threads=1)
    results = train_ensemble(dataset, train, agent, ENV, config, seeds=(0, 1))
    assert member_seeds((0, 1), 3) == (0, 1, 2, 3, 4, 5) and member_seeds((4,), 1) == (4,)
    assert [r.policy.metadata["network_seeds"] for r in results] == [[0, 1, 2], [3, 4, 5]]
    for result in results:
        network = result.policy.network
        assert isinstance(network, EnsembleNetwork) and network.rule == "vote" and len(network.members) == 3
        assert result.policy.agent_config.ensemble_members == 3 and result.updates > 0
