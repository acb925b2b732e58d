"""A batched ensemble of independent DQN agents: K members (one per seed) trained as one.

Each member has its own policy and target nets, replay, epsilon and random generators, and learns by
exactly the rule of :class:`models.agent.DqnAgent` (Huber loss, RMSprop, gradient-norm clipping per
member, hard or Polyak target sync, optional double DQN). The members' parameters are stacked along
a leading member dimension, ``[K, *shape]`` in the layout of the single network of
:mod:`models.networks`, so one optimiser step, one clip and one batched matrix product serve all
members, and member ``k`` becomes an ordinary :class:`~models.policy.Policy` (or a whole
:class:`~models.agent.DqnAgent`, optimiser state included) by slicing ``[k]``. Member ``k`` starts
from the weights ``DqnAgent(seed=seeds[k])`` starts from and draws its exploration from the same
generator, so an ensemble of one is the single agent.

Variants (:class:`EnsembleQNetwork`):

- ``linear``: each layer is one ``torch.baddbmm`` over the members; the first layer multiplies the
  market window and the account features separately, so the state is never concatenated, and its
  backward computes the weight gradient only (:class:`_MarketProduct`).
- ``lstm``: the recurrence is the fused LSTM kernel (oneDNN on the CPU, cuDNN on CUDA) called once per
  member on its weight slices; the head is batched. A hand-written LSTM cell batched over members
  (``[K, ...]`` weights, ``baddbmm`` per time step) was measured 2.4× slower per member on the CPU at
  batch 512: the gate arithmetic, not the call overhead, dominates there, and batching does not
  reduce it (the figures are in bench/training.py's report).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.agent import CHECKPOINT_VERSION, DqnAgent
from models.config import AgentConfig, config_to_dict
from models.features import FeatureSpec, Normalizer
from models.networks import (
    N_ACTIONS,
    EnsembleNetwork,
    LinearQNetwork,
    LstmQNetwork,
    build_network,
    combine_dueling,
)
from models.policy import Policy, resolve_device
from models.replay import Batch, IndexBatch


class EnsembleQNetwork(nn.Module):
    """K Q-networks of one variant with stacked parameters; ``forward`` maps ``[K, B, ...]`` → ``[K, B, 3]``.

    ``market``: ``[K, B, window, n_features]`` (or flattened ``[K, B, window × n_features]``);
    ``account``: ``[K, B, n_account]`` (ignored when ``n_account`` is 0).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        template = members[0]
        if not isinstance(template, (LinearQNetwork, LstmQNetwork)):
            raise ValueError(f"unsupported member network {type(template).__name__}")
        self.variant = "linear" if isinstance(template, LinearQNetwork) else "lstm"
        self.window, self.n_features, self.n_account = template.window, template.n_features, template.n_account
        self.members = len(members)
        self.names = list(template.state_dict())
        states = [m.state_dict() for m in members]
        self.stacked = nn.ParameterList(
            nn.Parameter(torch.stack([s[name].detach() for s in states]).clone()) for name in self.names
        )
        self.hidden = template.lstm.hidden_size if isinstance(template, LstmQNetwork) else 0
        self.dueling = template.dueling
        self._groups = {
            group: [i for i, name in enumerate(self.names) if name.startswith(f"{group}.")]
            for group in ("net", "head", "head.value", "head.advantage")
        }

    def _group(self, name: str) -> list[torch.Tensor]:
        """The stacked parameters whose names start with ``name.``, in state-dict order."""
        return [self.stacked[i] for i in self._groups[name]]

    def forward(self, market: torch.Tensor, account: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(market), account)

    def embed(self, market: torch.Tensor) -> torch.Tensor:
        """``[K, B, E]``: what the network computes from the market window alone (linear: the first
        layer's product with the window, before its bias; LSTM: the last hidden state). It depends on the
        window only, so a frozen target net's embedding of every row can be computed once and reused."""
        k, b = market.shape[:2]
        if self.variant == "linear":
            return _MarketProduct.apply(market.reshape(k, b, -1), self.stacked[0])
        return self._lstm_last(market.reshape(k, b, self.window, self.n_features))

    def head(self, embedding: torch.Tensor, account: torch.Tensor | None = None) -> torch.Tensor:
        """Q-values ``[K, B, 3]`` from :meth:`embed`'s output and the account features."""
        if self.n_account and account is None:
            raise ValueError("this network needs account features")
        if self.variant == "lstm":
            if self.n_account:
                embedding = torch.cat([embedding, account], dim=2)  # type: ignore[list-item]
            if self.dueling:
                return self._dueling(embedding)
            weight, bias = self._group("head")
            return torch.baddbmm(bias.unsqueeze(1), embedding, weight.transpose(1, 2))
        trunk = self._group("net")
        hidden = embedding + trunk[1].unsqueeze(1)
        if self.n_account:
            width = self.window * self.n_features
            hidden = torch.baddbmm(hidden, account, trunk[0][:, :, width:].transpose(1, 2))  # type: ignore[arg-type]
        for i in range(2, len(trunk), 2):
            hidden = torch.baddbmm(trunk[i + 1].unsqueeze(1), F.leaky_relu(hidden), trunk[i].transpose(1, 2))
        return self._dueling(F.leaky_relu(hidden)) if self.dueling else hidden

    def _dueling(self, features: torch.Tensor) -> torch.Tensor:
        """:class:`~models.networks.DuelingHead` of every member on ``features`` ``[K, B, in]``."""
        value, advantage = (_stream(features, self._group(name)) for name in ("head.value", "head.advantage"))
        return combine_dueling(value, advantage)

    def _lstm_last(self, sequence: torch.Tensor) -> torch.Tensor:
        w_ih, w_hh, b_ih, b_hh = list(self.stacked)[:4]
        zeros = sequence.new_zeros(1, sequence.shape[1], self.hidden)
        weights = [[w_ih[m], w_hh[m], b_ih[m], b_hh[m]] for m in range(sequence.shape[0])]
        return torch.stack(
            [
                torch.lstm(sequence[m], (zeros, zeros), w, True, 1, 0.0, self.training, False, True)[0][:, -1]
                for m, w in enumerate(weights)
            ]
        )

    def member_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """The ``state_dict`` of member ``k`` as the single network of its variant would hold it."""
        return {name: p[k].detach().clone() for name, p in zip(self.names, self.stacked, strict=True)}

    def member_network(self, k: int) -> nn.Module:
        """A copy of member ``k`` as an ordinary :mod:`models.networks` Q-network (same device)."""
        network = build_network(self.variant, self.window, self.n_features, self.n_account, self.dueling)
        network.load_state_dict(self.member_state_dict(k))
        return network.to(self.stacked[0].device)


class _MarketProduct(torch.autograd.Function):
    """``market @ W_m^T`` per member, ``W_m`` the market columns of the first linear layer's weight
    ``[K, out, market + account]`` (stored like ``nn.Linear``'s). The market never needs a gradient, so
    the backward computes only the weight's, as ``grad^T @ market`` directly in the weight's layout
    (autograd's generic ``market^T @ grad`` then transpose was measured 1.4× slower at K = 5)."""

    @staticmethod
    def forward(ctx: Any, market: torch.Tensor, weight: torch.Tensor) -> Any:
        ctx.save_for_backward(market)
        ctx.weight_shape = weight.shape
        return torch.bmm(market, weight[:, :, : market.shape[2]].transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        (market,) = ctx.saved_tensors
        weight = grad.new_zeros(ctx.weight_shape)
        torch.bmm(grad.transpose(1, 2), market, out=weight[:, :, : market.shape[2]])
        return None, weight


def _stream(features: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """A two-layer stream (Linear, LeakyReLU, Linear) of every member: ``[K, B, in]`` → ``[K, B, out]``."""
    w0, b0, w1, b1 = params
    hidden = F.leaky_relu(torch.baddbmm(b0.unsqueeze(1), features, w0.transpose(1, 2)))
    return torch.baddbmm(b1.unsqueeze(1), hidden, w1.transpose(1, 2))


def member_norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-member 2-norm ``[K]`` over all of ``tensors`` (each ``[K, ...]``)."""
    squares = torch.stack([t.reshape(t.shape[0], -1).pow(2).sum(dim=1) for t in tensors])
    return squares.sum(dim=0).sqrt()


class EnsembleAgent:
    """K :class:`~models.agent.DqnAgent` learners of one config (one per seed), stepped together."""

    def __init__(
        self,
        config: AgentConfig,
        window: int,
        n_features: int,
        n_account: int = 0,
        device: str = "auto",
        seeds: Sequence[int] = (0,),
    ) -> None:
        if not seeds:
            raise ValueError("an ensemble needs at least one seed")
        self.config, self.window, self.n_features, self.n_account = config, window, n_features, n_account
        self.seeds = tuple(int(s) for s in seeds)
        self.device = resolve_device(device)
        members = []
        for seed in self.seeds:  # the initial weights of DqnAgent(seed=seed)
            torch.manual_seed(seed)
            members.append(build_network(config.variant, window, n_features, n_account, config.dueling))
        self.policy_net = EnsembleQNetwork(members).to(self.device)
        self.target_net = EnsembleQNetwork(members).to(self.device)
        self.target_net.eval().requires_grad_(False)
        self.optimizer = torch.optim.RMSprop(self.policy_net.parameters(), lr=config.learning_rate)
        self.generators = [torch.Generator(device="cpu").manual_seed(seed + 1) for seed in self.seeds]
        self.epsilon = np.full(len(self.seeds), config.epsilon_start)
        self.updates = 0
        self.env_steps = 0  # per member
        self.target_version = 0
        self.states: torch.Tensor | None = None  # see attach_states
        self._cache_enabled, self._cache_version = False, -1
        self._cache: torch.Tensor | None = None

    @property
    def members(self) -> int:
        return len(self.seeds)

    # --- acting (target nets) -------------------------------------------------------------------
    @torch.inference_mode()
    def q_values(self, states: torch.Tensor, accounts: torch.Tensor | None = None) -> torch.Tensor:
        """Target-net Q-values ``[K, B, 3]`` of market windows ``[K, B, window, n_features]`` + accounts."""
        return self.target_net(states.to(self.device), None if accounts is None else accounts.to(self.device))

    def act(self, states: torch.Tensor, accounts: torch.Tensor | None = None, explore: bool = True) -> np.ndarray:
        """Epsilon-greedy (``explore``) or greedy actions of each member's target net, int64 ``[K, B]``."""
        return self.act_from_q(self.q_values(states, accounts), explore)

    def act_from_q(self, q_values: torch.Tensor, explore: bool = True) -> np.ndarray:
        """Each member draws from its own generator exactly as :meth:`DqnAgent.act_from_q` does."""
        greedy = q_values.argmax(dim=2).cpu()
        if not explore:
            return greedy.numpy()
        actions = greedy.clone()
        n = greedy.shape[1]
        for k, generator in enumerate(self.generators):
            epsilon = float(self.epsilon[k])
            if epsilon <= 0.0:
                continue
            explore_mask = torch.rand(n, generator=generator) < epsilon
            random = torch.randint(0, N_ACTIONS, (n,), generator=generator)
            actions[k] = torch.where(explore_mask, random, greedy[k])
        return actions.numpy()

    def decay_epsilon(self) -> np.ndarray:
        """One step of every member's multiplicative schedule, floored at ``epsilon_end``."""
        self.epsilon = np.maximum(self.config.epsilon_end, self.epsilon * self.config.epsilon_decay)
        return self.epsilon

    # --- acting and bootstrapping by feature-table row ------------------------------------------
    def attach_states(self, states: torch.Tensor) -> None:
        """Act and learn by row of ``states`` ``[T, window, n_features]`` (every row's window; shared by
        the members): :meth:`act_rows`, :meth:`learn_rows`. With hard target syncs that sample at least
        ``T`` rows in between, the target nets' :meth:`EnsembleQNetwork.embed` of every row is computed
        once per sync and the target values of a batch need only the head (the embedding depends on the
        window alone); the result is the same function, computed in another order."""
        self.states = states.to(self.device)
        cfg = self.config
        self._cache_enabled = cfg.tau >= 1.0 and cfg.target_sync_every * cfg.batch_size >= len(states)
        self._cache, self._cache_version = None, -1

    def _windows(self, rows: torch.Tensor) -> torch.Tensor:
        if self.states is None:
            raise ValueError("act_rows/learn_rows need the states table: call attach_states first")
        return self.states.index_select(0, rows.reshape(-1)).view(*rows.shape, *self.states.shape[1:])

    @torch.no_grad()
    def _target_embedding(self, rows: torch.Tensor) -> torch.Tensor:
        """Target nets' embedding ``[K, B, E]`` of the rows ``[K, B]`` (from the per-sync cache when enabled)."""
        if not self._cache_enabled:
            return self.target_net.embed(self._windows(rows))
        if self._cache is None or self._cache_version != self.target_version:
            assert self.states is not None
            k, chunks = self.members, torch.arange(len(self.states), device=self.device).split(4096)
            self._cache = torch.cat([self.target_net.embed(self._windows(c.expand(k, -1))) for c in chunks], dim=1)
            self._cache_version = self.target_version
        return self._cache.gather(1, rows.unsqueeze(2).expand(-1, -1, self._cache.shape[2]))

    def act_rows(self, rows: torch.Tensor, accounts: torch.Tensor, explore: bool = True) -> np.ndarray:
        """:meth:`act` on the attached states' rows ``[K, B]``."""
        with torch.no_grad():
            q_values = self.target_net.head(self._target_embedding(rows), accounts.to(self.device))
        return self.act_from_q(q_values, explore)

    # --- learning (policy nets) -----------------------------------------------------------------
    @torch.no_grad()
    def bootstrap_values(self, next_states: torch.Tensor, next_accounts: torch.Tensor) -> torch.Tensor:
        """``[K, B]`` value of the next states (max target Q, or double DQN)."""
        target_q = self.target_net(next_states, next_accounts)
        return self._bootstrap(target_q, lambda: self.policy_net(next_states, next_accounts))

    def _bootstrap(self, target_q: torch.Tensor, policy_q: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self.config.double_dqn:
            choice = policy_q().argmax(dim=2, keepdim=True)
            return target_q.gather(2, choice).squeeze(2)
        return target_q.max(dim=2).values

    def learn(self, batch: Batch) -> torch.Tensor:
        """One gradient step of every member on its ``[K, B, ...]`` batch; returns the losses ``[K]``."""
        next_values = self.bootstrap_values(batch.next_states, batch.next_accounts)
        return self._gradient_step(batch.states, batch, next_values)

    def learn_rows(self, batch: IndexBatch) -> torch.Tensor:
        """:meth:`learn` on a ``[K, B]`` index batch of the attached states (see :meth:`attach_states`)."""
        with torch.no_grad():
            target_q = self.target_net.head(self._target_embedding(batch.next_rows), batch.next_accounts)
            next_values = self._bootstrap(
                target_q, lambda: self.policy_net(self._windows(batch.next_rows), batch.next_accounts)
            )
        return self._gradient_step(self._windows(batch.rows), batch, next_values)

    def _gradient_step(
        self, states: torch.Tensor, batch: Batch | IndexBatch, next_values: torch.Tensor
    ) -> torch.Tensor:
        cfg = self.config
        discount = cfg.gamma if batch.discounts is None else batch.discounts
        targets = batch.rewards * cfg.reward_scale + discount * (1.0 - batch.terminals) * next_values
        q = self.policy_net(states, batch.accounts).gather(2, batch.actions.unsqueeze(2)).squeeze(2)
        losses = F.huber_loss(q, targets, delta=cfg.huber_delta, reduction="none").mean(dim=1)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # members share no parameter: each gets the gradient of its own loss
        self._clip_gradients(cfg.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        if cfg.tau < 1.0 or self.updates % cfg.target_sync_every == 0:
            self.sync_target()
        return losses.detach()

    @torch.no_grad()
    def _clip_gradients(self, max_norm: float) -> None:
        """``clip_grad_norm_`` of each member on its own gradients."""
        grads = [p.grad for p in self.policy_net.parameters() if p.grad is not None]
        coef = (max_norm / (member_norms(grads) + 1e-6)).clamp(max=1.0)
        for grad in grads:
            grad.mul_(coef.view(-1, *([1] * (grad.dim() - 1))))

    @torch.no_grad()
    def sync_target(self) -> None:
        """Copy (hard) or blend (Polyak, ``tau`` < 1) every member's policy net into its target net."""
        tau = self.config.tau
        for target, source in zip(self.target_net.parameters(), self.policy_net.parameters(), strict=True):
            if tau >= 1.0:
                target.copy_(source)
            else:
                target.lerp_(source, tau)
        self.target_version += 1

    # --- members as ordinary agents and policies -------------------------------------------------
    def to_policy(
        self, k: int, spec: FeatureSpec, normalizer: Normalizer, metadata: dict[str, Any] | None = None
    ) -> Policy:
        """Member ``k``'s serving :class:`Policy` (a copy of its acting target network)."""
        return Policy(spec, normalizer, self.config, self.target_net.member_network(k), metadata)

    def group_policy(
        self, members: Sequence[int], spec: FeatureSpec, normalizer: Normalizer, metadata: dict[str, Any] | None = None
    ) -> Policy:
        """One served :class:`Policy` of several members acting together (models.networks.EnsembleNetwork,
        ``config.ensemble_rule``), or member ``k``'s own policy for a group of one."""
        if len(members) == 1:
            return self.to_policy(members[0], spec, normalizer, metadata)
        network = EnsembleNetwork([self.target_net.member_network(k) for k in members], self.config.ensemble_rule)
        config = replace(self.config, ensemble_members=len(members))
        return Policy(spec, normalizer, config, network, metadata)

    def member_state(self, k: int) -> dict[str, Any]:
        """Member ``k`` as a :meth:`DqnAgent.state_dict` checkpoint (nets, optimiser, epsilon, counters)."""
        params = list(self.policy_net.parameters())
        names = self.policy_net.names
        optimizer = self.optimizer.state_dict()
        member_opt_state = {
            index: {key: _member_slice(value, k, params[index]) for key, value in state.items()}
            for index, state in optimizer["state"].items()
        }
        groups = [{**group, "params": list(range(len(names)))} for group in optimizer["param_groups"]]
        return {
            "version": CHECKPOINT_VERSION,
            "config": config_to_dict(self.config),
            "shape": [self.window, self.n_features, self.n_account],
            "policy_net": self.policy_net.member_state_dict(k),
            "target_net": self.target_net.member_state_dict(k),
            "optimizer": {"state": member_opt_state, "param_groups": groups},
            "epsilon": float(self.epsilon[k]),
            "counters": {"updates": self.updates, "env_steps": self.env_steps, "target_version": self.target_version},
            "generator": self.generators[k].get_state(),
        }

    def member_agent(self, k: int) -> DqnAgent:
        """Member ``k`` as an independent :class:`DqnAgent` (checkpointable, can keep learning online)."""
        agent = DqnAgent(
            self.config, self.window, self.n_features, self.n_account, str(self.device), seed=self.seeds[k]
        )
        agent.load_state_dict(self.member_state(k))
        return agent


def _member_slice(value: Any, k: int, param: torch.Tensor) -> Any:
    """Member ``k``'s part of an optimiser state entry (per-element tensors are stacked like ``param``)."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape == param.shape:
        return value[k].detach().clone()
    return value.clone() if isinstance(value, torch.Tensor) else value
