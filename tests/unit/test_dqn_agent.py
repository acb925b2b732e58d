"""Replay buffers, the agent's target synchronisation, checkpoints and the serving policy files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.agent import DqnAgent
from models.config import AgentConfig
from models.features import Normalizer, compute_feature_table, infer_spec
from models.kline import HOUR_MS
from models.policy import Policy
from models.replay import Batch, IndexReplayBuffer, ReplayBuffer
from models.synthetic import synthetic_klines

torch.set_num_threads(1)
WINDOW, FEATURES, ACCOUNT = 4, 5, 3


def _batch(n: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.randn(n, WINDOW, FEATURES, generator=g),
        torch.randn(n, ACCOUNT, generator=g),
        torch.randint(0, 3, (n,), generator=g),
        torch.rand(n, generator=g),
        torch.randn(n, WINDOW, FEATURES, generator=g),
        torch.randn(n, ACCOUNT, generator=g),
        torch.zeros(n),
    )


def test_index_replay_is_a_ring_and_samples_only_stored_transitions() -> None:
    replay = IndexReplayBuffer(5, n_account=1, seed=0)
    for start in (0, 3):
        rows = np.arange(start, start + 3)
        replay.add(rows, rows[:, None] * 1.0, rows % 3, rows * 1.0, rows + 1, rows[:, None] + 1.0, np.zeros(3))
    assert len(replay) == 5 and replay.position == 1
    assert replay.rows.tolist() == [5, 1, 2, 3, 4]  # row 0 was overwritten
    batch = replay.sample(200)
    assert set(batch.rows.tolist()) == {1, 2, 3, 4, 5}
    assert torch.equal(batch.next_rows, batch.rows + 1) and torch.equal(batch.rewards, batch.rows.float())
    assert batch.actions.dtype == torch.int64 and batch.accounts.shape == (200, 1)


def test_index_replay_gathers_the_windows_of_the_rows() -> None:
    replay = IndexReplayBuffer(10, n_account=0)
    replay.add(
        np.array([2]),
        np.zeros((1, 0)),
        np.array([1]),
        np.array([0.5]),
        np.array([3]),
        np.zeros((1, 0)),
        np.array([False]),
    )
    table = torch.arange(10.0).reshape(10, 1, 1).expand(10, WINDOW, 1)
    batch = replay.gather(replay.sample(4), table)
    assert batch.states[:, 0, 0].tolist() == [2.0] * 4 and batch.next_states[:, 0, 0].tolist() == [3.0] * 4


def test_full_replay_round_trips_its_state() -> None:
    replay = ReplayBuffer(8, (WINDOW, FEATURES), ACCOUNT, seed=1)
    replay.add(_batch(6))
    other = ReplayBuffer(8, (WINDOW, FEATURES), ACCOUNT, seed=1)
    other.load_state_dict(replay.state_dict())
    assert torch.equal(other.sample(16).states, replay.sample(16).states)


def _agent(**overrides: object) -> DqnAgent:
    config = AgentConfig(**{"variant": "linear", "batch_size": 16, **overrides})  # type: ignore[arg-type]
    return DqnAgent(config, WINDOW, FEATURES, ACCOUNT, device="cpu", seed=0)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_target_net_is_frozen_between_hard_syncs_and_copied_every_k_steps() -> None:
    agent = _agent(target_sync_every=3)
    before = {k: v.clone() for k, v in agent.target_net.state_dict().items()}
    for _ in range(2):
        agent.learn(_batch(16))
    assert all(torch.equal(before[k], v) for k, v in agent.target_net.state_dict().items())
    assert not _same_weights(agent.policy_net, agent.target_net)
    agent.learn(_batch(16))
    assert _same_weights(agent.policy_net, agent.target_net) and agent.target_version == 1
    assert not agent.target_net.training


def test_polyak_sync_blends_the_target_towards_the_policy() -> None:
    agent = _agent(tau=0.5)
    old = [p.clone() for p in agent.target_net.parameters()]
    agent.learn(_batch(16))
    for target, source, previous in zip(agent.target_net.parameters(), agent.policy_net.parameters(), old, strict=True):
        assert torch.allclose(target, 0.5 * previous + 0.5 * source)


def test_epsilon_decays_to_its_floor() -> None:
    agent = _agent(epsilon_decay=0.5, epsilon_end=0.1)
    assert [round(agent.decay_epsilon(), 3) for _ in range(4)] == [0.5, 0.25, 0.125, 0.1]


def test_checkpoint_round_trip_gives_identical_q_values_and_training(tmp_path: Path) -> None:
    agent = _agent(double_dqn=True, target_sync_every=2)
    replay = ReplayBuffer(64, (WINDOW, FEATURES), ACCOUNT, seed=3)
    replay.add(_batch(64, seed=5))
    for _ in range(5):
        agent.learn(replay.sample(16))
        agent.decay_epsilon()
    path = agent.save_checkpoint(tmp_path / "agent.pt", replay)
    restored_replay = ReplayBuffer(64, (WINDOW, FEATURES), ACCOUNT, seed=3)
    restored = DqnAgent.load_checkpoint(path, device="cpu", replay=restored_replay)
    probe = _batch(8, seed=9)
    assert torch.equal(agent.q_values(probe.states, probe.accounts), restored.q_values(probe.states, probe.accounts))
    assert (restored.epsilon, restored.updates, restored.target_version) == (agent.epsilon, 5, 2)
    restored_replay.generator.set_state(replay.generator.get_state())
    # one more identical step on both: same loss, same weights, same exploration
    assert agent.learn(replay.sample(16)) == restored.learn(restored_replay.sample(16))
    assert _same_weights(agent.policy_net, restored.policy_net)
    q = agent.q_values(probe.states, probe.accounts)
    assert np.array_equal(agent.act_from_q(q), restored.act_from_q(q))


@pytest.mark.parametrize("variant", ["linear", "lstm"])
def test_policy_save_load_round_trip_and_decision_on_the_last_klines(tmp_path: Path, variant: str) -> None:
    frame = synthetic_klines(120, seed=2)
    spec = infer_spec(frame, window=WINDOW)
    normalizer = Normalizer.fit(compute_feature_table(frame, spec), spec)
    agent = DqnAgent(AgentConfig(variant=variant), WINDOW, spec.n_features, spec.n_account, device="cpu", seed=1)
    policy = agent.to_policy(spec, normalizer, {"seed": 1})
    loaded = Policy.load(policy.save(tmp_path / variant))
    assert loaded.variant == variant and loaded.metadata == {"seed": 1} and loaded.spec == spec
    table, index, states = policy.states(frame)
    account = np.array([0.4, -0.2, 1.0], dtype=np.float32)
    accounts = np.repeat(account[None], len(index), axis=0)
    assert np.array_equal(policy.q_values_from_states(states, accounts), loaded.q_values_from_states(states, accounts))
    t = int(table.open_time[100])
    recent = frame[(frame["open_time"] <= t) & (frame["open_time"] > t - loaded.history_hours * HOUR_MS)]
    decision = loaded.decide(recent, account)
    expected = policy.q_values_from_states(states[np.searchsorted(index, 100)][None], account[None])[0]
    assert decision.open_time == t and decision.action == int(np.argmax(expected))
    assert np.allclose(decision.q_values, expected, atol=1e-6)


def test_policy_refuses_too_little_history(tmp_path: Path) -> None:
    frame = synthetic_klines(60)
    spec = infer_spec(frame, window=WINDOW)
    normalizer = Normalizer.fit(compute_feature_table(frame, spec), spec)
    policy = DqnAgent(AgentConfig(), WINDOW, spec.n_features, spec.n_account, device="cpu").to_policy(spec, normalizer)
    recent = frame[frame["open_time"] > frame["open_time"].max() - 10 * HOUR_MS]
    with pytest.raises(Exception, match=f"need the last {policy.history_hours} hourly klines"):
        policy.q_values(recent)
