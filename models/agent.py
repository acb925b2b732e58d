"""The DQN agent of both variants: a trained policy net and a target net that acts and bootstraps.

This is the reference's "Target-Policy architecture": ``policy_net`` is trained on replayed batches
with the Huber loss and gradient-norm clipping (RMSprop); ``target_net`` (eval mode, no gradients)
chooses the epsilon-greedy actions and gives the bootstrap value, and is synchronised with the policy
net every ``target_sync_every`` gradient steps (hard) or softly every step (Polyak, ``tau`` < 1).
Double DQN (policy net picks the bootstrap action, target net values it), a dueling head
(models/networks.py) and n-step returns (a batch's ``discounts``, from models.replay.NStepWindow) are
options.

Checkpoints hold both networks, the optimiser, epsilon, the step counters, the exploration
generator and optionally the replay buffer, written with ``torch.save`` of plain state dicts (never
modules) and read back with ``weights_only=True``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.config import AgentConfig, config_from_dict, config_to_dict
from models.features import FeatureSpec, Normalizer
from models.networks import N_ACTIONS, build_network
from models.policy import Policy, resolve_device
from models.replay import Batch, IndexReplayBuffer, ReplayBuffer

logger = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1


class DqnAgent:
    """Policy net + target net + optimiser + epsilon schedule for ``config.variant``."""

    def __init__(
        self,
        config: AgentConfig,
        window: int,
        n_features: int,
        n_account: int = 0,
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        self.config, self.window, self.n_features, self.n_account = config, window, n_features, n_account
        self.device = resolve_device(device)
        torch.manual_seed(seed)
        self.policy_net = build_network(config.variant, window, n_features, n_account, config.dueling).to(self.device)
        self.target_net = build_network(config.variant, window, n_features, n_account, config.dueling).to(self.device)
        self.target_net.load_state_dict(self.policy_net.state_dict())
        self.target_net.eval().requires_grad_(False)
        self.optimizer = torch.optim.RMSprop(self.policy_net.parameters(), lr=config.learning_rate)
        self.generator = torch.Generator(device="cpu").manual_seed(seed + 1)
        self.epsilon = config.epsilon_start
        self.updates = 0
        self.env_steps = 0
        self.target_version = 0

    # --- acting (target net) --------------------------------------------------------------------
    @torch.inference_mode()
    def q_values(self, states: torch.Tensor, accounts: torch.Tensor | None = None) -> torch.Tensor:
        """Target-net Q-values ``[B, 3]`` of market windows ``[B, window, n_features]`` + accounts."""
        return self.target_net(states.to(self.device), None if accounts is None else accounts.to(self.device))

    def act(self, states: torch.Tensor, accounts: torch.Tensor | None = None, explore: bool = True) -> np.ndarray:
        """Epsilon-greedy (``explore``) or greedy actions of the target net, int64 ``[B]``."""
        return self.act_from_q(self.q_values(states, accounts), explore)

    def act_from_q(self, q_values: torch.Tensor, explore: bool = True) -> np.ndarray:
        """Epsilon-greedy actions from precomputed target-net Q-values ``[B, 3]``."""
        greedy = q_values.argmax(dim=1).cpu()
        if not explore or self.epsilon <= 0.0:
            return greedy.numpy()
        n = len(greedy)
        explore_mask = torch.rand(n, generator=self.generator) < self.epsilon
        random = torch.randint(0, N_ACTIONS, (n,), generator=self.generator)
        return torch.where(explore_mask, random, greedy).numpy()

    def decay_epsilon(self) -> float:
        """One step of the multiplicative schedule, floored at ``epsilon_end``."""
        self.epsilon = max(self.config.epsilon_end, self.epsilon * self.config.epsilon_decay)
        return self.epsilon

    # --- learning (policy net) ------------------------------------------------------------------
    @torch.no_grad()
    def bootstrap_values(self, next_states: torch.Tensor, next_accounts: torch.Tensor) -> torch.Tensor:
        """Value of the next states: max target Q, or target Q at the policy's argmax (double DQN)."""
        target_q = self.target_net(next_states, next_accounts)
        if self.config.double_dqn:
            choice = self.policy_net(next_states, next_accounts).argmax(dim=1, keepdim=True)
            return target_q.gather(1, choice).squeeze(1)
        return target_q.max(dim=1).values

    def learn(self, batch: Batch) -> float:
        """One gradient step on ``batch``; syncs the target when due. Returns the loss."""
        cfg = self.config
        next_values = self.bootstrap_values(batch.next_states, batch.next_accounts)
        discount = cfg.gamma if batch.discounts is None else batch.discounts
        targets = batch.rewards * cfg.reward_scale + discount * (1.0 - batch.terminals) * next_values
        q = self.policy_net(batch.states, batch.accounts).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        loss = F.huber_loss(q, targets, delta=cfg.huber_delta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy_net.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        if cfg.tau < 1.0 or self.updates % cfg.target_sync_every == 0:
            self.sync_target()
        return float(loss.detach())

    @torch.no_grad()
    def sync_target(self) -> None:
        """Copy (hard) or blend (Polyak, ``tau`` < 1) the policy net into the target net."""
        tau = self.config.tau
        if tau >= 1.0:
            self.target_net.load_state_dict(self.policy_net.state_dict())
        else:
            for target, source in zip(self.target_net.parameters(), self.policy_net.parameters(), strict=True):
                target.lerp_(source, tau)
        self.target_version += 1

    # --- policy export and checkpoints ----------------------------------------------------------
    def to_policy(self, spec: FeatureSpec, normalizer: Normalizer, metadata: dict[str, Any] | None = None) -> Policy:
        """A serving :class:`Policy` with a copy of the acting (target) network."""
        cfg = self.config
        network = build_network(cfg.variant, self.window, self.n_features, self.n_account, cfg.dueling).to(self.device)
        network.load_state_dict(self.target_net.state_dict())
        return Policy(spec, normalizer, self.config, network, metadata)

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "config": config_to_dict(self.config),
            "shape": [self.window, self.n_features, self.n_account],
            "policy_net": self.policy_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epsilon": self.epsilon,
            "counters": {"updates": self.updates, "env_steps": self.env_steps, "target_version": self.target_version},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {state.get('version')} is not {CHECKPOINT_VERSION}")
        if config_from_dict(AgentConfig, state["config"]).variant != self.config.variant:
            raise ValueError("checkpoint variant does not match the agent")
        self.policy_net.load_state_dict(state["policy_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epsilon = float(state["epsilon"])
        counters = state["counters"]
        self.updates, self.env_steps = int(counters["updates"]), int(counters["env_steps"])
        self.target_version = int(counters["target_version"])
        self.generator.set_state(state["generator"])

    def save_checkpoint(self, path: Path | str, replay: ReplayBuffer | IndexReplayBuffer | None = None) -> Path:
        """Write the agent (and the replay buffer when given) to one file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        if replay is not None:
            state["replay"] = replay.state_dict()
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load_checkpoint(
        cls, path: Path | str, device: str = "auto", replay: ReplayBuffer | IndexReplayBuffer | None = None
    ) -> DqnAgent:
        """Rebuild an agent from :meth:`save_checkpoint` (and fill ``replay`` when the file has one)."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        window, n_features, n_account = (int(x) for x in state["shape"])
        agent = cls(config_from_dict(AgentConfig, state["config"]), window, n_features, n_account, device)
        agent.load_state_dict(state)
        if replay is not None and "replay" in state:
            replay.load_state_dict(state["replay"])
        return agent
