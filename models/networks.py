"""Q-networks: :class:`LinearQNetwork` (the reference's MLP) and :class:`LstmQNetwork`.

Both take a window of normalised feature rows, ``market`` ``[batch, window, n_features]`` (the linear
network also accepts it flattened), and the account features ``[batch, n_account]`` (``n_account``
may be 0), and return ``[batch, 3]`` Q-values for hold / buy / sell. Select a variant by name through
:data:`NETWORKS`.

A served ensemble (:class:`EnsembleNetwork`) holds K member networks of one variant and acts as their
mean Q or their majority vote.

Either variant can end in a :class:`DuelingHead` (``dueling=True``, Wang et al. 2016): separate value
and advantage streams, combined as Q = V + A − mean(A). Without it the state-dict layout is the one
policies were always saved in.
"""

from __future__ import annotations

import torch
from torch import nn

from models.config import AgentConfig

N_ACTIONS = 3
LSTM_DUELING_WIDTH = 32
"""Hidden width of each dueling stream of the LSTM variant (the linear variant's is its last hidden width)."""


class DuelingHead(nn.Module):
    """Value stream ``in → width → 1`` and advantage stream ``in → width → 3`` (LeakyReLU between);
    Q = V + A − mean(A) over the actions."""

    def __init__(self, in_features: int, width: int) -> None:
        super().__init__()
        self.value = nn.Sequential(nn.Linear(in_features, width), nn.LeakyReLU(), nn.Linear(width, 1))
        self.advantage = nn.Sequential(nn.Linear(in_features, width), nn.LeakyReLU(), nn.Linear(width, N_ACTIONS))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return combine_dueling(self.value(features), self.advantage(features))


def combine_dueling(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """Q-values ``[..., 3]`` from a value ``[..., 1]`` and advantages ``[..., 3]``."""
    return value + advantage - advantage.mean(dim=-1, keepdim=True)


class LinearQNetwork(nn.Module):
    """The reference code's fully-connected Q-network: state → 64 → 32 → 8 → 3 with LeakyReLU.

    The state is the flattened window plus the account features (250 inputs in the reference code;
    here ``window × n_features + n_account``, from the feature spec). Dueling: state → 64 → 32, then
    two streams of 8 (value → 1, advantage → 3).
    """

    def __init__(
        self,
        window: int,
        n_features: int,
        n_account: int = 0,
        hidden: tuple[int, ...] = (64, 32, 8),
        dueling: bool = False,
    ) -> None:
        super().__init__()
        self.window, self.n_features, self.n_account, self.dueling = window, n_features, n_account, dueling
        layers: list[nn.Module] = []
        size = window * n_features + n_account
        for width in hidden[:-1] if dueling else hidden:
            layers += [nn.Linear(size, width), nn.LeakyReLU()]
            size = width
        if not dueling:
            layers.append(nn.Linear(size, N_ACTIONS))
        self.net = nn.Sequential(*layers)
        self.head = DuelingHead(size, hidden[-1]) if dueling else None

    def forward(self, market: torch.Tensor, account: torch.Tensor | None = None) -> torch.Tensor:
        flat = market.reshape(market.shape[0], -1)
        if self.n_account:
            assert account is not None, "this network needs account features"
            flat = torch.cat([flat, account], dim=1)
        out = self.net(flat)
        return self.head(out) if self.head is not None else out


class LstmQNetwork(nn.Module):
    """An LSTM (hidden 64) over the window of feature rows, then a linear head on the last output
    (concatenated with the account features), or a :class:`DuelingHead` with streams of 32."""

    def __init__(self, window: int, n_features: int, n_account: int = 0, hidden: int = 64, dueling: bool = False):
        super().__init__()
        self.window, self.n_features, self.n_account, self.dueling = window, n_features, n_account, dueling
        self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
        self.head: nn.Module = (
            DuelingHead(hidden + n_account, LSTM_DUELING_WIDTH) if dueling else nn.Linear(hidden + n_account, N_ACTIONS)
        )

    def forward(self, market: torch.Tensor, account: torch.Tensor | None = None) -> torch.Tensor:
        sequence = market.reshape(market.shape[0], self.window, self.n_features)
        output, _ = self.lstm(sequence)
        last = output[:, -1]
        if self.n_account:
            assert account is not None, "this network needs account features"
            last = torch.cat([last, account], dim=1)
        return self.head(last)


class EnsembleNetwork(nn.Module):
    """K member Q-networks acting as one: ``forward`` returns ``[batch, 3]`` scores whose argmax is the
    ensemble's action.

    - ``mean``: the members' mean Q-values.
    - ``vote``: each member votes for its argmax; the scores are the vote shares plus at most half a vote
      by the rank of the mean Q (0, 1, 2 × 0.25 / K), so the majority wins and a tie goes to the larger
      mean Q.
    """

    def __init__(self, members: list[nn.Module], rule: str = "mean") -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if rule not in ("mean", "vote"):
            raise ValueError(f"unknown ensemble rule {rule!r}; choose mean or vote")
        self.members = nn.ModuleList(members)
        self.rule = rule

    def forward(self, market: torch.Tensor, account: torch.Tensor | None = None) -> torch.Tensor:
        return aggregate_q(torch.stack([member(market, account) for member in self.members]), self.rule)


def aggregate_q(member_q: torch.Tensor, rule: str) -> torch.Tensor:
    """``[..., 3]`` scores of an ensemble from its members' Q-values ``[K, ..., 3]`` (see :class:`EnsembleNetwork`)."""
    mean = member_q.mean(dim=0)
    if rule == "mean":
        return mean
    k = member_q.shape[0]
    votes = torch.nn.functional.one_hot(member_q.argmax(dim=-1), N_ACTIONS).to(mean.dtype).mean(dim=0)
    rank = mean.argsort(dim=-1).argsort(dim=-1).to(mean.dtype)
    return votes + rank * (0.25 / k)


NETWORKS: dict[str, type[LinearQNetwork] | type[LstmQNetwork]] = {"linear": LinearQNetwork, "lstm": LstmQNetwork}


def build_network(variant: str, window: int, n_features: int, n_account: int = 0, dueling: bool = False) -> nn.Module:
    """The Q-network of ``variant`` (a key of :data:`NETWORKS`), with a dueling head when asked."""
    try:
        cls = NETWORKS[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(NETWORKS)}") from None
    return cls(window, n_features, n_account, dueling=dueling)


def build_policy_network(config: AgentConfig, window: int, n_features: int, n_account: int = 0) -> nn.Module:
    """The served network of ``config``: one Q-network, or an :class:`EnsembleNetwork` of
    ``config.ensemble_members`` of them acting by ``config.ensemble_rule``."""
    members = [
        build_network(config.variant, window, n_features, n_account, config.dueling)
        for _ in range(config.ensemble_members)
    ]
    return members[0] if len(members) == 1 else EnsembleNetwork(members, config.ensemble_rule)
