"""Helpers of the MLflow registry / promotion / retrain tests: klines of the five context symbols (random walks
with a chosen drift) and policies whose behaviour is known (random or constant Q-values)."""

from __future__ import annotations

import os

import pandas as pd
import torch
from torch import nn

from models.config import AgentConfig
from models.networks import build_network
from models.policy import Policy
from models.settings import DEFAULT_SYMBOLS
from models.synthetic import random_walk_klines
from models.time_range import parse_range, parse_time
from pipelines.dataset import build_dataset

START = "2022-01-01"
TRAIN_RANGE = "2022-01-03:2022-01-15"
TEST_RANGE = "2022-01-15:2022-01-22"


def registry_klines(hours: int = 24 * 22, seed: int = 0, drift: float = 0.0005, vol: float = 0.01) -> pd.DataFrame:
    """Hourly klines of the five default symbols from :data:`START`: random walks with ``drift`` (so a long-only
    policy's result has a known sign)."""
    return random_walk_klines(DEFAULT_SYMBOLS, parse_time(START), hours, seed=seed, drift=drift, vol=vol)


def random_policy(klines: pd.DataFrame, variant: str = "linear", seed: int = 0) -> Policy:
    """An untrained policy (seeded random weights) with the feature spec and normalisation of ``klines``."""
    dataset = build_dataset(klines, parse_range(TRAIN_RANGE))
    torch.manual_seed(seed)
    spec = dataset.spec
    network = build_network(variant, spec.window, spec.n_features, spec.n_account)
    return Policy(spec, dataset.normalizer, AgentConfig(variant=variant), network, {"test": "random"})


def constant_policy(klines: pd.DataFrame, action: int) -> Policy:
    """A linear policy whose Q-values are the same at every hour, greatest for ``action``."""
    policy = random_policy(klines, "linear")
    with torch.no_grad():
        for parameter in policy.network.parameters():
            parameter.zero_()
        last = [m for m in policy.network.modules() if isinstance(m, nn.Linear)][-1]
        last.bias[action] = 1.0
    return policy


def mlflow_login() -> tuple[str, str] | None:
    """The MLflow account the tests act as, for their raw REST calls (the integration conftest logs the process in
    as the writer through ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``); None when MLflow has no passwords."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return (user, password) if user and password else None
