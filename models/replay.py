"""Replay buffers: preallocated torch ring storage returning typed NamedTuple batches.

- :class:`ReplayBuffer` stores whole state tensors (any state shape); used where states do not
  come from one feature table (e.g. online learning on a stream).
- :class:`IndexReplayBuffer` stores row indices into a feature table and gathers the windows at
  sampling time (``[batch, window, n_features]``), so a transition costs a few integers instead of a
  copied window; used by the vectorised trainer for both variants (sequence-aware for the LSTM).
- :class:`NStepWindow` turns one-step transitions of vectorised environments into n-step ones
  (discounted return of n rewards, bootstrap from the state n steps on, discount ``gamma ** n``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    states: torch.Tensor  # float32 [B, window, n_features] market windows
    accounts: torch.Tensor  # float32 [B, n_account]
    actions: torch.Tensor  # int64 [B]
    rewards: torch.Tensor  # float32 [B]
    next_states: torch.Tensor  # float32 [B, window, n_features]
    next_accounts: torch.Tensor  # float32 [B, n_account]
    terminals: torch.Tensor  # float32 [B], 1.0 = no bootstrap
    discounts: torch.Tensor | None = None  # float32 [B] discount of the bootstrap; None = the agent's gamma


class IndexBatch(NamedTuple):
    rows: torch.Tensor  # int64 [B] feature-table row of the state
    accounts: torch.Tensor  # float32 [B, n_account]
    actions: torch.Tensor  # int64 [B]
    rewards: torch.Tensor  # float32 [B]
    next_rows: torch.Tensor  # int64 [B]
    next_accounts: torch.Tensor  # float32 [B, n_account]
    terminals: torch.Tensor  # float32 [B]
    discounts: torch.Tensor | None = None  # float32 [B]; None = the agent's gamma (one-step transitions)


class _Ring:
    """Insertion position and size of a ring of ``capacity`` slots."""

    def __init__(self, capacity: int, device: torch.device | str, seed: int) -> None:
        if capacity < 1:
            raise ValueError("replay capacity must be >= 1")
        self.capacity, self.device = capacity, torch.device(device)
        self.position, self.size = 0, 0
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def _slots(self, n: int) -> torch.Tensor:
        if n > self.capacity:
            raise ValueError(f"cannot add {n} transitions to a buffer of {self.capacity}")
        slots = (torch.arange(n) + self.position) % self.capacity
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        return slots.to(self.device)

    def _sample_slots(self, batch_size: int) -> torch.Tensor:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return torch.randint(0, self.size, (batch_size,), generator=self.generator).to(self.device)

    def _ring_state(self) -> dict[str, int]:
        return {"position": self.position, "size": self.size, "capacity": self.capacity}


class ReplayBuffer(_Ring):
    """Ring of full transitions ``(state, action, reward, next_state, terminal)``."""

    def __init__(
        self,
        capacity: int,
        state_shape: tuple[int, ...],
        n_account: int = 0,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(capacity, device, seed)
        self.states = torch.zeros((capacity, *state_shape), dtype=torch.float32, device=self.device)
        self.next_states = torch.zeros_like(self.states)
        self.accounts = torch.zeros((capacity, n_account), dtype=torch.float32, device=self.device)
        self.next_accounts = torch.zeros_like(self.accounts)
        self.actions = torch.zeros(capacity, dtype=torch.int64, device=self.device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self.terminals = torch.zeros(capacity, dtype=torch.float32, device=self.device)

    def add(self, batch: Batch) -> None:
        """Add a batch of transitions (leading dimension = number of transitions)."""
        states, accounts, actions, rewards, next_states, next_accounts, terminals = batch[:7]
        slots = self._slots(len(actions))
        self.states[slots] = states.to(self.device, torch.float32)
        self.next_states[slots] = next_states.to(self.device, torch.float32)
        self.accounts[slots] = accounts.to(self.device, torch.float32)
        self.next_accounts[slots] = next_accounts.to(self.device, torch.float32)
        self.actions[slots] = actions.to(self.device, torch.int64)
        self.rewards[slots] = rewards.to(self.device, torch.float32)
        self.terminals[slots] = terminals.to(self.device, torch.float32)

    def sample(self, batch_size: int) -> Batch:
        """Uniform sample with replacement."""
        i = self._sample_slots(batch_size)
        return Batch(
            self.states[i],
            self.accounts[i],
            self.actions[i],
            self.rewards[i],
            self.next_states[i],
            self.next_accounts[i],
            self.terminals[i],
        )

    def state_dict(self) -> dict[str, object]:
        n = self.size
        return {**self._ring_state(), **{name: getattr(self, name)[:n].cpu() for name in _FULL}}

    def load_state_dict(self, state: dict[str, object]) -> None:
        _load_ring(self, state, _FULL)


class IndexReplayBuffer(_Ring):
    """Ring of transitions stored as feature-table rows; windows are gathered at sampling time."""

    def __init__(self, capacity: int, n_account: int = 0, device: torch.device | str = "cpu", seed: int = 0) -> None:
        super().__init__(capacity, device, seed)
        self.accounts = torch.zeros((capacity, n_account), dtype=torch.float32, device=self.device)
        self.next_accounts = torch.zeros_like(self.accounts)
        self.rows = torch.zeros(capacity, dtype=torch.int64, device=self.device)
        self.next_rows = torch.zeros(capacity, dtype=torch.int64, device=self.device)
        self.actions = torch.zeros(capacity, dtype=torch.int64, device=self.device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self.terminals = torch.zeros(capacity, dtype=torch.float32, device=self.device)

    def add(
        self,
        rows: np.ndarray,
        accounts: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_rows: np.ndarray,
        next_accounts: np.ndarray,
        terminals: np.ndarray,
    ) -> None:
        """Add a batch of transitions given as numpy arrays (one entry per environment)."""
        slots = self._slots(len(actions))
        self.accounts[slots] = torch.as_tensor(accounts, dtype=torch.float32).to(self.device)
        self.next_accounts[slots] = torch.as_tensor(next_accounts, dtype=torch.float32).to(self.device)
        self.rows[slots] = torch.as_tensor(rows, dtype=torch.int64).to(self.device)
        self.next_rows[slots] = torch.as_tensor(next_rows, dtype=torch.int64).to(self.device)
        self.actions[slots] = torch.as_tensor(actions, dtype=torch.int64).to(self.device)
        self.rewards[slots] = torch.as_tensor(rewards, dtype=torch.float32).to(self.device)
        self.terminals[slots] = torch.as_tensor(terminals, dtype=torch.float32).to(self.device)

    def sample(self, batch_size: int) -> IndexBatch:
        """Uniform sample with replacement, as row indices."""
        i = self._sample_slots(batch_size)
        return IndexBatch(
            self.rows[i],
            self.accounts[i],
            self.actions[i],
            self.rewards[i],
            self.next_rows[i],
            self.next_accounts[i],
            self.terminals[i],
        )

    def gather(self, batch: IndexBatch, states: torch.Tensor) -> Batch:
        """Turn an index batch into states using ``states`` = all windows of the table ``[T, ...]``."""
        return Batch(
            states.index_select(0, batch.rows),
            batch.accounts,
            batch.actions,
            batch.rewards,
            states.index_select(0, batch.next_rows),
            batch.next_accounts,
            batch.terminals,
        )

    def state_dict(self) -> dict[str, object]:
        n = self.size
        return {**self._ring_state(), **{name: getattr(self, name)[:n].cpu() for name in _INDEX}}

    def load_state_dict(self, state: dict[str, object]) -> None:
        _load_ring(self, state, _INDEX)


class EnsembleReplayBuffer(_Ring):
    """One :class:`IndexReplayBuffer` per ensemble member, stored as ``[K, capacity]`` rings.

    Every member adds the same number of transitions per step, so the rings share one position and
    size; member ``k`` samples with its own generator seeded ``seeds[k]``, drawing exactly what an
    ``IndexReplayBuffer(seed=seeds[k])`` would.
    """

    def __init__(
        self, seeds: Sequence[int], capacity: int, n_account: int = 0, device: torch.device | str = "cpu"
    ) -> None:
        if not seeds:
            raise ValueError("an ensemble replay needs at least one seed")
        super().__init__(capacity, device, int(seeds[0]))
        self.generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        k = len(seeds)
        self.accounts = torch.zeros((k, capacity, n_account), dtype=torch.float32, device=self.device)
        self.next_accounts = torch.zeros_like(self.accounts)
        self.rows = torch.zeros((k, capacity), dtype=torch.int64, device=self.device)
        self.next_rows = torch.zeros_like(self.rows)
        self.actions = torch.zeros_like(self.rows)
        self.rewards = torch.zeros((k, capacity), dtype=torch.float32, device=self.device)
        self.terminals = torch.zeros_like(self.rewards)
        self.discounts: torch.Tensor | None = None  # allocated by the first add with discounts (n-step)
        self._members = torch.arange(k, device=self.device).unsqueeze(1)

    def add(
        self,
        rows: np.ndarray,
        accounts: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_rows: np.ndarray,
        next_accounts: np.ndarray,
        terminals: np.ndarray,
        discounts: np.ndarray | None = None,
    ) -> None:
        """Add ``[K, n]`` transitions (``[K, n, n_account]`` accounts): n per member; ``discounts`` ``[K, n]``
        for n-step transitions (every add then needs them)."""
        slots = self._slots(actions.shape[1])
        if discounts is not None:
            if self.discounts is None:
                self.discounts = torch.zeros_like(self.rewards)
            self.discounts[:, slots] = torch.as_tensor(discounts, dtype=torch.float32).to(self.device)
        for name, values, dtype in (
            ("rows", rows, torch.int64),
            ("accounts", accounts, torch.float32),
            ("actions", actions, torch.int64),
            ("rewards", rewards, torch.float32),
            ("next_rows", next_rows, torch.int64),
            ("next_accounts", next_accounts, torch.float32),
            ("terminals", terminals, torch.float32),
        ):
            getattr(self, name)[:, slots] = torch.as_tensor(values, dtype=dtype).to(self.device)

    def sample(self, batch_size: int) -> IndexBatch:
        """Each member's uniform sample with replacement, as ``[K, batch_size]`` row indices."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        draws = [torch.randint(0, self.size, (batch_size,), generator=g) for g in self.generators]
        i, k = torch.stack(draws).to(self.device), self._members
        return IndexBatch(
            self.rows[k, i],
            self.accounts[k, i],
            self.actions[k, i],
            self.rewards[k, i],
            self.next_rows[k, i],
            self.next_accounts[k, i],
            self.terminals[k, i],
            None if self.discounts is None else self.discounts[k, i],
        )

    @staticmethod
    def gather(batch: IndexBatch, states: torch.Tensor) -> Batch:
        """States ``[K, B, ...]`` of an ensemble index batch from the shared table ``states`` ``[T, ...]``."""
        shape = (*batch.rows.shape, *states.shape[1:])
        return Batch(
            states.index_select(0, batch.rows.reshape(-1)).view(shape),
            batch.accounts,
            batch.actions,
            batch.rewards,
            states.index_select(0, batch.next_rows.reshape(-1)).view(shape),
            batch.next_accounts,
            batch.terminals,
            batch.discounts,
        )


class NStepWindow:
    """The last ``n`` steps of ``E`` vectorised environments, turned into n-step transitions.

    :meth:`push` takes one step's one-step transitions (``[E, ...]`` arrays) and, once ``n`` steps are
    held, returns each env's transition that started ``n - 1`` steps before: the discounted sum of its
    next ``h`` rewards, the state after them and the discount ``gamma ** h`` of the bootstrap, where
    ``h = n``, or fewer when the episode ended (``truncated``) in between, so no return mixes episodes.
    Exactly one transition per env and step, as the ensemble replay needs.
    """

    def __init__(self, n: int, gamma: float) -> None:
        if n < 1:
            raise ValueError(f"n-step returns need n >= 1, got {n}")
        self.n, self.gamma = n, gamma
        self.steps: list[tuple[np.ndarray, ...]] = []

    def push(
        self,
        rows: np.ndarray,
        accounts: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_rows: np.ndarray,
        next_accounts: np.ndarray,
        truncated: np.ndarray,
    ) -> tuple[np.ndarray, ...] | None:
        """Add one step; returns (rows, accounts, actions, returns, next rows, next accounts, terminals,
        discounts) of the transitions that started ``n - 1`` steps ago, or None while fewer are held."""
        self.steps.append((rows, accounts, actions, rewards, next_rows, next_accounts, truncated))
        if len(self.steps) < self.n:
            return None
        steps, self.steps = self.steps, self.steps[1:]
        first = steps[0]
        alive = np.ones(len(rewards), dtype=bool)
        returns = np.zeros(len(rewards), dtype=np.float64)
        horizon = np.zeros(len(rewards), dtype=np.int64)
        end_rows, end_accounts = first[4].copy(), first[5].copy()
        for i, (_, _, _, reward, next_row, next_account, ended) in enumerate(steps):
            returns += np.where(alive, self.gamma**i * reward, 0.0)
            horizon += alive
            end_rows = np.where(alive, next_row, end_rows)
            end_accounts[alive] = next_account[alive]
            alive &= ~ended
        discounts = self.gamma ** horizon.astype(np.float64)
        terminals = np.zeros(len(rewards), dtype=np.float32)
        return (first[0], first[1], first[2], returns.astype(np.float32), end_rows, end_accounts, terminals,
                discounts.astype(np.float32))  # fmt: skip


_FULL = ("states", "accounts", "actions", "rewards", "next_states", "next_accounts", "terminals")
_INDEX = ("rows", "accounts", "actions", "rewards", "next_rows", "next_accounts", "terminals")


def _load_ring(buffer: _Ring, state: dict[str, object], names: tuple[str, ...]) -> None:
    if int(state["capacity"]) != buffer.capacity:  # type: ignore[call-overload]
        raise ValueError(f"replay capacity {state['capacity']} does not match {buffer.capacity}")
    size = int(state["size"])  # type: ignore[call-overload]
    for name in names:
        value = state[name]
        assert isinstance(value, torch.Tensor)
        getattr(buffer, name)[:size] = value.to(buffer.device)
    buffer.size, buffer.position = size, int(state["position"])  # type: ignore[call-overload]
