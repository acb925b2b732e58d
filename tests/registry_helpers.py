"""Helpers of the MLflow registry / promotion / retrain tests: synthetic klines of the five context
symbols (with a chosen drift) and policies whose behaviour is known (random or constant Q-values)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.config import AgentConfig
from models.kline import HOUR_MS, conform_frame
from models.networks import build_network
from models.policy import Policy
from models.settings import DEFAULT_SYMBOLS
from models.time_range import parse_range
from pipelines.dataset import build_dataset

START = "2022-01-01"
TRAIN_RANGE = "2022-01-03:2022-01-15"
TEST_RANGE = "2022-01-15:2022-01-22"


def synthetic_klines(
    start: str = START, hours: int = 24 * 22, seed: int = 0, drift: float = 0.0005, vol: float = 0.01
) -> pd.DataFrame:
    """Contract-form hourly klines of the five default symbols: geometric random walks with ``drift``."""
    rng = np.random.default_rng(seed)
    open_time = parse_range(f"{start}:2100-01-01").start_ms + np.arange(hours, dtype=np.int64) * HOUR_MS
    frames = []
    for index, symbol in enumerate(DEFAULT_SYMBOLS):
        close = 10.0 * (index + 1) * np.exp(np.cumsum(rng.normal(drift, vol, hours)))
        open_ = np.r_[close[0], close[:-1]]
        volume = rng.uniform(10, 1000, hours)
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "interval": "1h",
                    "open_time": open_time,
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.002,
                    "low": np.minimum(open_, close) * 0.998,
                    "close": close,
                    "volume": volume,
                    "close_time": open_time + HOUR_MS - 1,
                    "quote_volume": volume * close,
                    "count": rng.integers(100, 5000, hours),
                    "taker_buy_volume": volume * rng.uniform(0.3, 0.7, hours),
                    "taker_buy_quote_volume": volume * close * 0.5,
                }
            )
        )
    return conform_frame(pd.concat(frames, ignore_index=True))


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
