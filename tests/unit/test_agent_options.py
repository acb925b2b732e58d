"""The robust-agent options of the DQN family: dueling heads, n-step returns, served ensembles (mean Q or
vote) and their defaults (all off until the hyperparameter search chooses them)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from models.agent import DqnAgent
from models.config import AgentConfig, EnvConfig, TrainConfig
from models.ensemble import EnsembleQNetwork
from models.features import FeatureSpec, Normalizer
from models.networks import DuelingHead, EnsembleNetwork, aggregate_q, build_network, build_policy_network
from models.policy import Policy
from models.replay import Batch, NStepWindow

torch.set_num_threads(1)
WINDOW, FEATURES, ACCOUNT = 4, 6, 3
VARIANTS = ("linear", "lstm")


def test_every_new_option_is_off_by_default() -> None:
    agent, env, train = AgentConfig(), EnvConfig(), TrainConfig()
    assert (agent.dueling, agent.n_step, agent.ensemble_members, agent.ensemble_rule) == (False, 1, 1, "mean")
    assert (env.min_hold_hours, env.turnover_penalty, env.position_step) == (0, 0.0, 0.2)
    assert (train.validation_days, train.patience) == (0, 0)
    for config in (agent, env, train):  # a search space names plain fields with one-line docs
        assert all(f.type in ("int", "float", "bool", "str", "Accounting", "RewardKind", "EnsembleRule")
                   for f in fields(config)), config  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_account", [0, ACCOUNT])
def test_a_dueling_network_returns_three_q_values_from_a_value_and_centred_advantages(
    variant: str, n_account: int
) -> None:
    torch.manual_seed(0)
    network = build_network(variant, WINDOW, FEATURES, n_account, dueling=True)
    market, account = torch.randn(5, WINDOW, FEATURES), torch.rand(5, n_account)
    q = network(market, account if n_account else None)
    assert q.shape == (5, 3)
    head = network.head
    assert isinstance(head, DuelingHead)
    # rebuild Q from the streams by hand: V + A - mean(A)
    features: list[torch.Tensor] = []
    head.register_forward_hook(lambda _m, inputs, _out: features.append(inputs[0]))
    network(market, account if n_account else None)
    value, advantage = head.value(features[0]), head.advantage(features[0])
    assert value.shape == (5, 1) and advantage.shape == (5, 3)
    torch.testing.assert_close(q, value + advantage - advantage.mean(dim=1, keepdim=True))
    # the advantages of one state sum to zero around the value: mean(Q) = V
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), value)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_dueling_ensemble_computes_each_members_own_network(variant: str) -> None:
    members = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        members.append(build_network(variant, WINDOW, FEATURES, ACCOUNT, dueling=True))
    ensemble = EnsembleQNetwork(members)
    market, account = torch.randn(3, 7, WINDOW, FEATURES), torch.rand(3, 7, ACCOUNT)
    with torch.no_grad():
        batched = ensemble(market, account)
        for k, member in enumerate(members):
            torch.testing.assert_close(batched[k], member(market[k], account[k]), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(ensemble.member_network(k)(market[k], account[k]), member(market[k], account[k]))


def test_the_n_step_window_sums_discounted_rewards_by_hand_and_stops_at_an_episode_end() -> None:
    gamma = 0.5
    window = NStepWindow(3, gamma)
    # two envs over five steps; env 1's episode ends at step 1 (its next row then starts a new episode)
    rewards = [np.array([1.0, 10.0]), np.array([2.0, 20.0]), np.array([4.0, 40.0]), np.array([8.0, 80.0]),
               np.array([16.0, 160.0])]  # fmt: skip
    ended = [np.array([False, False]), np.array([False, True]), np.array([False, False]), np.array([False, False]),
             np.array([False, False])]  # fmt: skip
    out = []
    for t in range(5):
        rows, next_rows = np.array([t, 100 + t]), np.array([t + 1, 101 + t])
        accounts = np.full((2, 1), float(t))
        got = window.push(rows, accounts, np.array([1, 2]), rewards[t].astype(np.float32), next_rows,
                          accounts + 1.0, ended[t])  # fmt: skip
        out.append(got)
    assert out[0] is None and out[1] is None  # fewer than n steps held
    first = out[2]
    assert first is not None
    rows, accounts, actions, returns, next_rows, next_accounts, terminals, discounts = first
    # env 0: 1 + 0.5·2 + 0.25·4 = 3, bootstrap from the state after step 2 with 0.5³
    # env 1: its episode ended after step 1: 10 + 0.5·20 = 20, bootstrap from step 1's next state with 0.5²
    np.testing.assert_allclose(returns, [3.0, 20.0])
    np.testing.assert_allclose(discounts, [0.125, 0.25])
    assert rows.tolist() == [0, 100] and next_rows.tolist() == [3, 102] and actions.tolist() == [1, 2]
    assert next_accounts[:, 0].tolist() == [3.0, 2.0] and terminals.tolist() == [0.0, 0.0]
    second = out[3]
    assert second is not None
    np.testing.assert_allclose(second[3], [2 + 0.5 * 4 + 0.25 * 8, 20.0])  # env 1's step-1 transition: 1 step
    np.testing.assert_allclose(second[7], [0.125, 0.5])
    third = out[4]
    assert third is not None  # env 1's new episode: three full steps again
    np.testing.assert_allclose(third[3], [4 + 0.5 * 8 + 0.25 * 16, 40 + 0.5 * 80 + 0.25 * 160])


def test_the_learning_target_uses_the_n_step_discount() -> None:
    config = AgentConfig(variant="linear", batch_size=2, learning_rate=0.0, reward_scale=1.0)
    agent = DqnAgent(config, WINDOW, FEATURES, ACCOUNT, "cpu", seed=0)
    g = torch.Generator().manual_seed(1)
    batch = Batch(torch.randn(2, WINDOW, FEATURES, generator=g), torch.rand(2, ACCOUNT, generator=g),
                  torch.tensor([0, 1]), torch.tensor([3.0, 20.0]), torch.randn(2, WINDOW, FEATURES, generator=g),
                  torch.rand(2, ACCOUNT, generator=g), torch.zeros(2), torch.tensor([0.125, 0.25]))  # fmt: skip
    with torch.no_grad():
        next_values = agent.target_net(batch.next_states, batch.next_accounts).max(dim=1).values
        q = agent.policy_net(batch.states, batch.accounts).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
    expected = torch.nn.functional.huber_loss(q, batch.rewards + batch.discounts * next_values)  # type: ignore[operator]
    assert agent.learn(batch) == pytest.approx(float(expected), rel=1e-6)
    one_step = agent.learn(batch._replace(discounts=None))  # gamma 0.95 instead: another target
    assert one_step != pytest.approx(float(expected), rel=1e-3)


def _members(variant: str, k: int) -> list[torch.nn.Module]:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(build_network(variant, WINDOW, FEATURES, ACCOUNT))
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_ensemble_acts_as_its_members_mean_q(variant: str) -> None:
    members = _members(variant, 3)
    network = EnsembleNetwork(members, "mean")
    market, account = torch.randn(9, WINDOW, FEATURES), torch.rand(9, ACCOUNT)
    with torch.no_grad():
        each = torch.stack([m(market, account) for m in members])
        torch.testing.assert_close(network(market, account), each.mean(dim=0))


def test_an_ensemble_acts_as_its_members_majority_vote_and_a_tie_goes_to_the_larger_mean_q() -> None:
    q = torch.tensor(
        [
            [[0.0, 1.0, 0.5], [9.0, 0.0, 0.0], [0.0, 0.0, 1.0]],  # member 0 votes buy, hold, sell
            [[0.0, 2.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 1.0]],  # member 1: buy, buy, sell
            [[3.5, 0.0, 0.0], [0.0, 0.0, 4.0], [1.0, 0.0, 0.0]],  # member 2: hold, sell, hold
        ]
    )  # [K = 3, B = 3 states, 3 actions]
    scores = aggregate_q(q, "vote")
    # state 0: buy 2 votes; state 1: one vote each, mean Q hold 3 > buy 5/3 > sell 4/3; state 2: sell 2 votes
    assert scores.argmax(dim=1).tolist() == [1, 0, 2]
    torch.testing.assert_close(scores.floor(), torch.zeros(3, 3))  # shares below one: votes / K plus < half a vote
    assert aggregate_q(q, "mean").argmax(dim=1).tolist() == [0, 0, 2]  # the mean disagrees on state 0


@pytest.mark.parametrize("rule", ["mean", "vote"])
def test_an_ensemble_policy_saves_loads_and_decides_like_its_members(tmp_path: Path, rule: str) -> None:
    config = AgentConfig(variant="lstm", dueling=True, ensemble_members=3, ensemble_rule=rule)  # type: ignore[arg-type]
    spec = FeatureSpec(symbols=("BTCUSDT",), traded_symbol="BTCUSDT", window=WINDOW, optional={})
    torch.manual_seed(0)
    network = build_policy_network(config, WINDOW, spec.n_features, spec.n_account)
    assert isinstance(network, EnsembleNetwork) and len(network.members) == 3
    normalizer = Normalizer(np.zeros(spec.n_features, np.float32), np.ones(spec.n_features, np.float32))
    policy = Policy(spec, normalizer, config, network, {"env_config": {}})
    loaded = Policy.load(policy.save(tmp_path / "policy"))
    assert isinstance(loaded.network, EnsembleNetwork) and loaded.network.rule == rule
    states = np.random.default_rng(0).normal(size=(16, WINDOW, spec.n_features)).astype(np.float32)
    accounts = np.random.default_rng(1).uniform(size=(16, spec.n_account)).astype(np.float32)
    np.testing.assert_array_equal(loaded.q_values_from_states(states, accounts),
                                  policy.q_values_from_states(states, accounts))  # fmt: skip
    with torch.no_grad():
        member_q = torch.stack([m(torch.from_numpy(states), torch.from_numpy(accounts)) for m in network.members])
    expected = aggregate_q(member_q, rule).argmax(dim=1).numpy()
    np.testing.assert_array_equal(loaded.q_values_from_states(states, accounts).argmax(axis=1), expected)


def test_a_config_with_impossible_options_is_refused() -> None:
    with pytest.raises(ValueError):
        AgentConfig(n_step=0)
    with pytest.raises(ValueError):
        AgentConfig(ensemble_members=0)
    with pytest.raises(ValueError):
        AgentConfig(ensemble_rule="median")  # type: ignore[arg-type]
