"""Q-networks: :class:`LinearQNetwork` (the reference's MLP) and :class:`LstmQNetwork`.

Both take a window of normalised feature rows, ``market`` ``[batch, window, n_features]`` (the linear
network also accepts it flattened), and the account features ``[batch, n_account]`` (``n_account``
may be 0), and return ``[batch, 3]`` Q-values for hold / buy / sell. Select a variant by name through
:data:`NETWORKS`.
"""

from __future__ import annotations

import torch
from torch import nn

N_ACTIONS = 3


class LinearQNetwork(nn.Module):
    """The reference code's fully-connected Q-network: state → 64 → 32 → 8 → 3 with LeakyReLU.

    The state is the flattened window plus the account features (250 inputs in the reference code;
    here ``window × n_features + n_account``, from the feature spec).
    """

    def __init__(self, window: int, n_features: int, n_account: int = 0, hidden: tuple[int, ...] = (64, 32, 8)) -> None:
        super().__init__()
        self.window, self.n_features, self.n_account = window, n_features, n_account
        layers: list[nn.Module] = []
        size = window * n_features + n_account
        for width in hidden:
            layers += [nn.Linear(size, width), nn.LeakyReLU()]
            size = width
        layers.append(nn.Linear(size, N_ACTIONS))
        self.net = nn.Sequential(*layers)

    def forward(self, market: torch.Tensor, account: torch.Tensor | None = None) -> torch.Tensor:
        flat = market.reshape(market.shape[0], -1)
        if self.n_account:
            assert account is not None, "this network needs account features"
            flat = torch.cat([flat, account], dim=1)
        return self.net(flat)


class LstmQNetwork(nn.Module):
    """An LSTM (hidden 64) over the window of feature rows, then a linear head on the last output
    (concatenated with the account features)."""

    def __init__(self, window: int, n_features: int, n_account: int = 0, hidden: int = 64) -> None:
        super().__init__()
        self.window, self.n_features, self.n_account = window, n_features, n_account
        self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden + n_account, N_ACTIONS)

    def forward(self, market: torch.Tensor, account: torch.Tensor | None = None) -> torch.Tensor:
        sequence = market.reshape(market.shape[0], self.window, self.n_features)
        output, _ = self.lstm(sequence)
        last = output[:, -1]
        if self.n_account:
            assert account is not None, "this network needs account features"
            last = torch.cat([last, account], dim=1)
        return self.head(last)


NETWORKS: dict[str, type[LinearQNetwork] | type[LstmQNetwork]] = {"linear": LinearQNetwork, "lstm": LstmQNetwork}


def build_network(variant: str, window: int, n_features: int, n_account: int = 0) -> nn.Module:
    """The Q-network of ``variant`` (a key of :data:`NETWORKS`)."""
    try:
        cls = NETWORKS[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(NETWORKS)}") from None
    return cls(window, n_features, n_account)
