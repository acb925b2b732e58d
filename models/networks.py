"""Q-networks: :class:`LinearQNetwork` (the reference's MLP) and :class:`LstmQNetwork`.

Both take a window of normalised feature rows, ``[batch, window, n_features]`` (the linear network
also accepts the flattened ``[batch, window * n_features]``), and return ``[batch, 3]`` Q-values for
hold / buy / sell. Select a variant by name through :data:`NETWORKS`.
"""

from __future__ import annotations

import torch
from torch import nn

N_ACTIONS = 3


class LinearQNetwork(nn.Module):
    """The reference code's fully-connected Q-network: state → 64 → 32 → 8 → 3 with LeakyReLU."""

    def __init__(self, window: int, n_features: int, hidden: tuple[int, ...] = (64, 32, 8)) -> None:
        super().__init__()
        self.window, self.n_features = window, n_features
        layers: list[nn.Module] = []
        size = window * n_features
        for width in hidden:
            layers += [nn.Linear(size, width), nn.LeakyReLU()]
            size = width
        layers.append(nn.Linear(size, N_ACTIONS))
        self.net = nn.Sequential(*layers)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states.reshape(states.shape[0], -1))


class LstmQNetwork(nn.Module):
    """An LSTM (hidden 64) over the window of feature rows, then a linear head on the last output."""

    def __init__(self, window: int, n_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.window, self.n_features = window, n_features
        self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, N_ACTIONS)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        sequence = states.reshape(states.shape[0], self.window, self.n_features)
        output, _ = self.lstm(sequence)
        return self.head(output[:, -1])


NETWORKS: dict[str, type[LinearQNetwork] | type[LstmQNetwork]] = {"linear": LinearQNetwork, "lstm": LstmQNetwork}


def build_network(variant: str, window: int, n_features: int) -> nn.Module:
    """The Q-network of ``variant`` (a key of :data:`NETWORKS`)."""
    try:
        cls = NETWORKS[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(NETWORKS)}") from None
    return cls(window, n_features)
