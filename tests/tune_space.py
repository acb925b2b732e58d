"""The tiny search space of the search's tests (unit and integration): two searched fields, a short episode and
the reference features, so a trial of a few hundred env steps runs in seconds."""

from __future__ import annotations

from typing import Any

SYMBOLS = ("BTCUSDT", "ETHUSDT")
TINY_SPACE: dict[str, Any] = {
    "fixed": {"env.accounting": "portfolio", "env.reward": "log_return", "env.episode_hours": 48,
              "features.set": "reference", "train.n_envs": 4},
    "params": {"agent.learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
               "agent.gamma": {"low": 0.8, "high": 0.99}},
}  # fmt: skip
