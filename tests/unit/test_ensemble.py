"""The batched ensemble: each member computes, learns and exports exactly like an independent agent."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.agent import DqnAgent
from models.config import AgentConfig, EnvConfig, TrainConfig
from models.ensemble import EnsembleAgent, EnsembleQNetwork
from models.kline import HOUR_MS
from models.networks import build_network
from models.policy import Policy
from models.replay import Batch, EnsembleReplayBuffer, IndexReplayBuffer
from models.synthetic import START_MS, synthetic_klines
from models.time_range import TimeRange
from pipelines.dataset import build_dataset
from pipelines.train import train_ensemble

torch.set_num_threads(1)
WINDOW, FEATURES, ACCOUNT = 4, 6, 3
VARIANTS = ("linear", "lstm")


def _batch(lead: tuple[int, ...], seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.randn(*lead, WINDOW, FEATURES, generator=g),
        torch.rand(*lead, ACCOUNT, generator=g),
        torch.randint(0, 3, lead, generator=g),
        torch.rand(lead, generator=g),
        torch.randn(*lead, WINDOW, FEATURES, generator=g),
        torch.rand(*lead, ACCOUNT, generator=g),
        torch.zeros(lead),
    )


def _member(batch: Batch, k: int) -> Batch:
    return Batch(*(None if t is None else t[k] for t in batch))  # discounts: None = one-step transitions


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_account", [0, ACCOUNT])
def test_batched_forward_equals_each_members_own_network(variant: str, n_account: int) -> None:
    members = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        members.append(build_network(variant, WINDOW, FEATURES, n_account))
    ensemble = EnsembleQNetwork(members)
    batch = _batch((3, 7))
    accounts = batch.accounts[..., :n_account]
    with torch.no_grad():
        batched = ensemble(batch.states, accounts)
        for k, member in enumerate(members):
            alone = member(batch.states[k], accounts[k] if n_account else None)
            torch.testing.assert_close(batched[k], alone, rtol=1e-5, atol=1e-6)
            exported = ensemble.member_network(k)
            assert type(exported) is type(member)
            torch.testing.assert_close(exported(batch.states[k], accounts[k] if n_account else None), alone)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "rule", [{}, {"double_dqn": True, "tau": 0.5}, {"dueling": True}], ids=["hard-sync", "double-polyak", "dueling"]
)
def test_a_member_learns_like_an_independent_dqn_agent(variant: str, rule: dict[str, Any]) -> None:
    config = AgentConfig(
        variant=variant, batch_size=16, target_sync_every=2, learning_rate=0.01, max_grad_norm=0.5, **rule
    )
    seeds = (3, 8)
    ensemble = EnsembleAgent(config, WINDOW, FEATURES, ACCOUNT, "cpu", seeds)
    agents = [DqnAgent(config, WINDOW, FEATURES, ACCOUNT, "cpu", seed=s) for s in seeds]
    # learning steps across a target sync, clipping active; a step moves weights by about lr = 0.01
    for step in range(3):
        batch = _batch((2, 16), seed=step)
        losses = ensemble.learn(batch)
        for k, agent in enumerate(agents):
            assert losses[k].item() == pytest.approx(agent.learn(_member(batch, k)), rel=1e-5)
    # RMSprop divides by the root mean square of the gradient, so the batched and the single network's
    # different summation orders move a near-zero-gradient weight by up to ~1e-5 (0.1% of a step)
    atol = 5e-5
    for k, agent in enumerate(agents):
        state = ensemble.member_state(k)
        for name, value in agent.policy_net.state_dict().items():
            torch.testing.assert_close(state["policy_net"][name], value, rtol=1e-4, atol=atol)
        for name, value in agent.target_net.state_dict().items():
            torch.testing.assert_close(state["target_net"][name], value, rtol=1e-4, atol=atol)
        assert ensemble.target_version == agent.target_version


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rule", [{}, {"double_dqn": True}, {"tau": 0.5}], ids=["cached", "cached-double", "polyak"])
def test_learning_by_row_equals_learning_on_the_gathered_windows(variant: str, rule: dict[str, Any]) -> None:
    """The per-sync embedding cache of the target nets (hard syncs) changes nothing but the order of sums."""
    config = AgentConfig(variant=variant, batch_size=32, target_sync_every=4, learning_rate=0.01, **rule)
    table = torch.randn(100, WINDOW, FEATURES)
    by_row = EnsembleAgent(config, WINDOW, FEATURES, ACCOUNT, "cpu", (1, 2))
    by_row.attach_states(table)
    assert by_row._cache_enabled == (config.tau >= 1.0)  # 4 syncs × 32 rows >= 100 rows
    by_window = EnsembleAgent(config, WINDOW, FEATURES, ACCOUNT, "cpu", (1, 2))
    replay = EnsembleReplayBuffer((1, 2), capacity=200, n_account=ACCOUNT)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 99, (2, 150))
    accounts = rng.random((2, 150, ACCOUNT))
    replay.add(rows, accounts, rows % 3, rng.random((2, 150)), rows + 1, accounts, np.zeros((2, 150)))
    for _ in range(9):  # across two target syncs
        batch = replay.sample(32)
        torch.testing.assert_close(by_row.learn_rows(batch), by_window.learn(replay.gather(batch, table)))
        accounts_now = torch.rand(2, 8, ACCOUNT)
        current = torch.from_numpy(rows[:, :8])
        q_rows = by_row.target_net.head(by_row._target_embedding(current), accounts_now)
        torch.testing.assert_close(q_rows, by_window.q_values(table[current], accounts_now), rtol=1e-4, atol=1e-5)
    for name, value in by_window.policy_net.state_dict().items():
        torch.testing.assert_close(by_row.policy_net.state_dict()[name], value, rtol=1e-4, atol=1e-5)


def test_members_explore_with_their_own_generators_like_single_agents() -> None:
    config = AgentConfig(variant="linear")
    ensemble = EnsembleAgent(config, WINDOW, FEATURES, 0, "cpu", (0, 1))
    agents = [DqnAgent(config, WINDOW, FEATURES, 0, "cpu", seed=s) for s in (0, 1)]
    states = torch.randn(2, 50, WINDOW, FEATURES)
    for _ in range(3):
        actions = ensemble.act(states, torch.zeros(2, 50, 0))
        for k, agent in enumerate(agents):
            np.testing.assert_array_equal(actions[k], agent.act(states[k], torch.zeros(50, 0)))
            agent.decay_epsilon()
        ensemble.decay_epsilon()
    assert not np.array_equal(actions[0], actions[1])
    np.testing.assert_allclose(ensemble.epsilon, [a.epsilon for a in agents])


def test_ensemble_replay_samples_what_each_members_own_buffer_would() -> None:
    seeds = (4, 9)
    ensemble = EnsembleReplayBuffer(seeds, capacity=6, n_account=1)
    singles = [IndexReplayBuffer(6, n_account=1, seed=s) for s in seeds]
    for start in (0, 4):
        rows = np.stack([np.arange(start, start + 4) + 100 * k for k in range(2)])
        accounts, zeros = rows[..., None] * 1.0, np.zeros_like(rows, dtype=float)
        ensemble.add(rows, accounts, rows % 3, rows * 0.5, rows + 1, accounts + 1, zeros)
        for k, single in enumerate(singles):
            single.add(rows[k], accounts[k], rows[k] % 3, rows[k] * 0.5, rows[k] + 1, accounts[k] + 1, zeros[k])
    batch = ensemble.sample(32)
    for k, single in enumerate(singles):
        expected = single.sample(32)
        for got, want in zip(batch, expected, strict=True):
            if want is None:  # no n-step discounts in either
                assert got is None
                continue
            torch.testing.assert_close(got[k], want)
    table = torch.arange(300.0).reshape(300, 1, 1)
    gathered = EnsembleReplayBuffer.gather(batch, table)
    assert gathered.states.shape == (2, 32, 1, 1)
    torch.testing.assert_close(gathered.states[..., 0, 0], batch.rows.float())


def _synthetic_dataset(days: int = 20) -> tuple[object, TimeRange]:
    klines = synthetic_klines(24 * days, seed=5)
    train = TimeRange(START_MS, START_MS + 24 * days * HOUR_MS)
    return build_dataset(klines, train), train


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_members_training_does_not_depend_on_the_other_members(variant: str) -> None:
    dataset, train = _synthetic_dataset()
    agent = AgentConfig(variant=variant, batch_size=32, target_sync_every=5, reward_scale=100.0)
    env = EnvConfig(accounting="portfolio", reward="log_return", fee_rate=0.001, episode_hours=24)
    config = TrainConfig(n_envs=4, total_env_steps=4 * 40, learning_starts=40, threads=1)
    together = train_ensemble(dataset, train, agent, env, config, seeds=(1, 2))  # type: ignore[arg-type]
    alone = train_ensemble(dataset, train, agent, env, replace(config, seed=2))  # type: ignore[arg-type]
    assert together[1].updates == alone[0].updates > 0
    weights_together = together[1].policy.network.state_dict()
    for name, value in alone[0].policy.network.state_dict().items():
        torch.testing.assert_close(weights_together[name], value, rtol=1e-4, atol=1e-5)
    assert together[1].policy.metadata["train_config"]["seed"] == 2
    different = together[0].policy.network.state_dict()
    assert any(not torch.allclose(different[n], v) for n, v in weights_together.items())


def test_exported_members_round_trip_as_policies_and_checkpoints(tmp_path: Path) -> None:
    dataset, train = _synthetic_dataset(12)
    agent = AgentConfig(variant="lstm", batch_size=32, target_sync_every=5)
    config = TrainConfig(n_envs=4, total_env_steps=4 * 20, learning_starts=20, threads=1)
    results = train_ensemble(dataset, train, agent, EnvConfig(episode_hours=24), config, seeds=(0, 1))  # type: ignore[arg-type]
    states = torch.randn(5, dataset.spec.window, dataset.spec.n_features)  # type: ignore[attr-defined]
    accounts = torch.rand(5, 3)
    for k, result in enumerate(results):
        loaded = Policy.load(result.policy.save(tmp_path / f"policy{k}"))
        np.testing.assert_array_equal(
            loaded.q_values_from_states(states, accounts), result.policy.q_values_from_states(states, accounts)
        )
        path = result.agent.save_checkpoint(tmp_path / f"agent{k}.pt")
        restored = DqnAgent.load_checkpoint(path)
        assert restored.updates == result.updates and restored.epsilon == result.agent.epsilon
        torch.testing.assert_close(restored.q_values(states, accounts), result.agent.q_values(states, accounts))
        # the served policy is the agent's acting network
        torch.testing.assert_close(
            torch.from_numpy(result.policy.q_values_from_states(states, accounts)), restored.q_values(states, accounts)
        )
