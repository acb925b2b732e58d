"""Online learning for the live trader, on top of :class:`models.agent.DqnAgent`.

The agent starts from the champion's weights (policy net = target net = the served network), acts
with the **target** net (epsilon-greedy with a small online epsilon and the agent's seeded generator),
learns on the **policy** net from a replay of the hours it has traded, and syncs the target every
``target_sync_every`` gradient steps (the reference's Target-Policy architecture).

An ensemble policy (``agent_config.ensemble_members`` > 1) keeps learning as an ensemble: each member
is a DqnAgent started from its served weights, all members learn from the one replay of the hours
traded (each draws its own batch, one after another from the replay's generator), and the trader acts
on the members' target nets combined by the policy's rule (mean Q or vote), epsilon-greedy with the
first member's generator. Online learning is one-step (the policy's ``n_step`` applies offline only).

Compact replay: a transition is ``(hour, action, reward, next hour)`` in a
:class:`models.replay.IndexReplayBuffer` (a few integers and floats), and the normalised feature
rows of the recent hours live once in a ring (``[capacity, n_features]`` float32, about 200 bytes an
hour); windows are gathered at sampling time. A checkpoint of 10,000 transitions is then about
2.5 MB instead of the ~40 MB of stored windows, cheap enough to write after every micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from models.agent import DqnAgent
from models.networks import EnsembleNetwork, aggregate_q
from models.policy import Policy
from models.replay import Batch, IndexBatch, IndexReplayBuffer


@dataclass(frozen=True)
class OnlineConfig:
    enabled: bool = True
    """Learn online; when False the trader acts greedily with the champion's weights, like the backtest."""
    epsilon: float = 0.01
    """Exploration probability while learning online (0 when learning is off)."""
    learning_rate: float = 1e-4
    """RMSprop learning rate of the online updates (smaller than offline training)."""
    batch_size: int = 32
    """Transitions per gradient step."""
    buffer_size: int = 10_000
    """Replay capacity in transitions (one per traded hour)."""
    learn_starts: int = 32
    """Transitions in the replay before the first gradient step."""
    updates_per_hour: int = 1
    """Gradient steps after each completed transition."""
    target_sync_every: int = 24
    """Gradient steps between hard target syncs."""
    seed: int = 0
    """Seed of exploration and replay sampling (both checkpointed)."""


class FeatureRowRing:
    """Normalised feature rows keyed by hour number (``open_time // HOUR_MS``), the last ``capacity``."""

    def __init__(self, capacity: int, n_features: int) -> None:
        self.capacity = capacity
        self.hours = np.full(capacity, -1, dtype=np.int64)
        self.rows = np.zeros((capacity, n_features), dtype=np.float32)

    def put(self, hours: np.ndarray, rows: np.ndarray) -> None:
        slots = hours % self.capacity
        self.hours[slots], self.rows[slots] = hours, rows

    def has_window(self, hour: int, window: int) -> bool:
        wanted = np.arange(hour - window + 1, hour + 1, dtype=np.int64)
        return bool((self.hours[wanted % self.capacity] == wanted).all())

    def windows(self, hours: np.ndarray, window: int) -> np.ndarray:
        """float32 ``[len(hours), window, n_features]``: the rows of each hour and the window-1 before."""
        wanted = np.asarray(hours, dtype=np.int64)[:, None] + np.arange(-window + 1, 1)[None, :]
        slots = wanted % self.capacity
        if (self.hours[slots] != wanted).any():
            missing = wanted[self.hours[slots] != wanted][:3].tolist()
            raise RuntimeError(f"feature rows of hours {missing} are no longer held; raise the ring capacity")
        return self.rows[slots]

    def state_dict(self) -> dict[str, torch.Tensor]:
        held = self.hours >= 0
        return {"hours": torch.from_numpy(self.hours[held].copy()), "rows": torch.from_numpy(self.rows[held].copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.hours[:] = -1
        self.put(state["hours"].numpy(), state["rows"].numpy())


class OnlineLearner:
    """DqnAgents seeded with a served :class:`Policy` (one per ensemble member), plus their compact replay."""

    def __init__(self, policy: Policy, config: OnlineConfig) -> None:
        self.policy, self.config = policy, config
        epsilon = config.epsilon if config.enabled else 0.0
        agent_config = replace(
            policy.agent_config, learning_rate=config.learning_rate, batch_size=config.batch_size,
            target_sync_every=config.target_sync_every, tau=1.0, epsilon_start=epsilon, epsilon_end=epsilon,
            buffer_size=config.buffer_size, n_step=1, ensemble_members=1,
        )  # fmt: skip
        spec = policy.spec
        self.window = spec.window
        self.n_account = spec.n_account
        self.rule = policy.agent_config.ensemble_rule
        networks = list(policy.network.members) if isinstance(policy.network, EnsembleNetwork) else [policy.network]
        self.agents = []
        for k, network in enumerate(networks):
            agent = DqnAgent(agent_config, spec.window, spec.n_features, spec.n_account, str(policy.device),
                             config.seed + 1_000 * k)  # fmt: skip
            weights = network.state_dict()
            agent.policy_net.load_state_dict(weights)
            agent.target_net.load_state_dict(weights)
            agent.epsilon = epsilon
            self.agents.append(agent)
        self.agent = self.agents[0]
        """The first member: it explores and counts the updates (every member takes the same steps)."""
        self.replay = IndexReplayBuffer(config.buffer_size, spec.n_account, self.agent.device, config.seed + 2)
        self.rows = FeatureRowRing(config.buffer_size + spec.window + 8, spec.n_features)
        self.last_loss: float | None = None
        """Huber loss of the latest gradient step (not checkpointed: None again after a restart)."""

    @property
    def updates(self) -> int:
        return self.agent.updates

    @property
    def epsilon(self) -> float:
        return self.agent.epsilon

    def q_values(self, hour: int, account: np.ndarray) -> np.ndarray:
        """Target-net Q-values ``[3]`` at ``hour`` (its rows must be stored) for the account features (an
        ensemble's scores: models.networks.aggregate_q of its members' target nets)."""
        states = torch.from_numpy(self.rows.windows(np.array([hour]), self.window))
        accounts = torch.from_numpy(account[None, :]) if self.n_account else None
        if len(self.agents) == 1:
            return self.agent.q_values(states, accounts).cpu().numpy()[0]
        member_q = torch.stack([agent.q_values(states, accounts) for agent in self.agents])
        return aggregate_q(member_q, self.rule).cpu().numpy()[0]

    def act(self, q_values: np.ndarray, tradable: bool) -> tuple[int, int, bool]:
        """(action, greedy action, explored). Not tradable → hold (no random draw, like the backtest)."""
        greedy = int(np.argmax(q_values))
        if not tradable:
            return 0, 0, False
        action = int(self.agent.act_from_q(torch.from_numpy(q_values[None, :]), explore=self.config.enabled)[0])
        return action, greedy, action != greedy

    def observe(self, hour: int, account: np.ndarray, action: int, reward: float, next_hour: int,
                next_account: np.ndarray) -> int:  # fmt: skip
        """Store one transition and take the due gradient steps of every member; returns the steps taken."""
        if not self.config.enabled:
            return 0
        self.replay.add(np.array([hour]), account[None, : self.n_account], np.array([action]), np.array([reward]),
                        np.array([next_hour]), next_account[None, : self.n_account], np.zeros(1))  # fmt: skip
        if len(self.replay) < self.config.learn_starts:
            return 0
        for _ in range(self.config.updates_per_hour):
            losses = [agent.learn(self._batch(self.replay.sample(self.config.batch_size))) for agent in self.agents]
            self.last_loss = float(np.mean(losses))  # an ensemble's: its members' mean
        return self.config.updates_per_hour

    def _batch(self, sampled: IndexBatch) -> Batch:
        states = torch.from_numpy(self.rows.windows(sampled.rows.cpu().numpy(), self.window))
        next_states = torch.from_numpy(self.rows.windows(sampled.next_rows.cpu().numpy(), self.window))
        device = self.agent.device
        return Batch(states.to(device), sampled.accounts, sampled.actions, sampled.rewards, next_states.to(device),
                     sampled.next_accounts, sampled.terminals)  # fmt: skip

    def serving_policy(self, metadata: dict[str, Any]) -> Policy:
        """The acting (target) networks as a :class:`Policy` (for logging online weights)."""
        if len(self.agents) == 1:
            return self.agent.to_policy(self.policy.spec, self.policy.normalizer, metadata)
        members = [agent.to_policy(self.policy.spec, self.policy.normalizer).network for agent in self.agents]
        network = EnsembleNetwork(members, self.rule)
        return Policy(self.policy.spec, self.policy.normalizer, self.policy.agent_config, network, metadata)

    def state_dict(self) -> dict[str, Any]:
        state = {
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict(),
            "replay_generator": self.replay.generator.get_state(),
            "rows": self.rows.state_dict(),
        }
        if len(self.agents) > 1:
            state["members"] = [agent.state_dict() for agent in self.agents[1:]]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        members = state.get("members", [])
        if len(members) != len(self.agents) - 1:
            raise ValueError(f"checkpoint holds {len(members) + 1} online members, the policy {len(self.agents)}")
        for agent, agent_state in zip(self.agents, [state["agent"], *members], strict=True):
            agent.load_state_dict(agent_state)
        self.replay.load_state_dict(state["replay"])
        self.replay.generator.set_state(state["replay_generator"])
        self.rows.load_state_dict(state["rows"])
