"""Training: the vectorised DQN loop over a :class:`~pipelines.dataset.MarketDataset`.

Reads like the algorithm: ``n_envs`` environments act with the target net (epsilon-greedy), their
transitions go into an index replay buffer, and after each vectorised step the policy net takes
``replay_ratio × n_envs / batch_size`` gradient steps. The replay stores feature-table rows and
account features; windows are gathered from one preallocated tensor of all training states.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from models.agent import DqnAgent
from models.config import REWARD_KINDS, AgentConfig, EnvConfig, TrainConfig, config_to_dict
from models.env import VectorTradingEnv
from models.policy import Policy
from models.replay import IndexReplayBuffer
from models.time_range import TimeRange
from pipelines.dataset import MarketDataset

logger = logging.getLogger(__name__)

#: Called with (env steps done, env steps total, latest loss).
ProgressFn = Callable[[int, int, float], None]


def default_configs(
    variant: str, seed: int = 0, device: str = "cpu", reward: str = "reference"
) -> tuple[AgentConfig, EnvConfig, TrainConfig]:
    """The project's default training setup for the reference protocol (fast, vectorised).

    Reference hyperparameters (gamma 0.95, RMSprop lr 0.005, epsilon 1.0 → 0.01 at 0.995, Huber,
    replay 100k) with large batches over many environments. ``reward``: "reference" = the reference's
    max(profit, 0) on a sell in unit accounting (scaled to thousands of dollars); "log_return" or
    "risk" = portfolio accounting with 0.1% fees (log returns scaled ×100; "risk" also subtracts the
    drawdown increase).
    """
    if variant == "linear":
        train = TrainConfig(n_envs=256, total_env_steps=600_000, learning_starts=10_000, replay_ratio=8)
        batch = 2048
    else:
        train = TrainConfig(n_envs=64, total_env_steps=150_000, learning_starts=5_000, replay_ratio=8)
        batch = 512
    if reward not in REWARD_KINDS:
        raise ValueError(f"unknown reward {reward!r}; choose one of {', '.join(REWARD_KINDS)}")
    if reward == "reference":
        env, scale = EnvConfig(), 1e-3
    else:
        env = EnvConfig(accounting="portfolio", reward=reward, fee_rate=0.001)
        scale = 100.0
    agent = AgentConfig(variant=variant, batch_size=batch, target_sync_every=50, reward_scale=scale)
    return agent, env, replace(train, seed=seed, device=device)


@dataclass
class TrainResult:
    agent: DqnAgent
    policy: Policy
    seconds: float
    env_steps: int
    updates: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / max(self.seconds, 1e-9)


def train_agent(
    dataset: MarketDataset,
    train_range: TimeRange,
    agent_config: AgentConfig,
    env_config: EnvConfig,
    train_config: TrainConfig,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train one agent on ``train_range`` of ``dataset``; returns it with its serving policy."""
    torch.set_num_threads(train_config.threads)
    torch.set_flush_denormal(True)
    np.random.seed(train_config.seed)
    spec = dataset.spec
    agent = DqnAgent(agent_config, spec.window, spec.n_features, spec.n_account, train_config.device, train_config.seed)
    rows = dataset.range_rows(train_range)
    states = torch.from_numpy(dataset.windows(upto=int(rows[-1]))).to(agent.device)
    env = VectorTradingEnv(
        dataset.table.close,
        dataset.table.tradable,
        env_config,
        train_config.n_envs,
        rows[:-1],
        seed=train_config.seed,
        last_row=int(rows[-1]),
    )
    replay = IndexReplayBuffer(agent_config.buffer_size, spec.n_account, agent.device, seed=train_config.seed)
    account_of = _account_source(env, spec.n_account)
    updates_per_step = max(1, math.ceil(train_config.replay_ratio * train_config.n_envs / agent_config.batch_size))
    n_steps = max(1, train_config.total_env_steps // train_config.n_envs)
    history: list[dict[str, float]] = []
    current = env.reset()
    account = account_of()
    loss, started = float("nan"), time.perf_counter()
    for step in range(1, n_steps + 1):
        actions = agent.act(states[current], torch.from_numpy(account), explore=True)
        result = env.step(actions)
        next_account = result.next_accounts if spec.n_account else account
        replay.add(current, account, actions, result.rewards, result.next_rows, next_account, result.terminal)
        current = env.rows.copy()
        account = account_of() if result.truncated.any() else next_account
        agent.env_steps += train_config.n_envs
        agent.decay_epsilon()
        if len(replay) >= train_config.learning_starts:
            for _ in range(updates_per_step):
                loss = agent.learn(replay.gather(replay.sample(agent_config.batch_size), states))
        if step % 100 == 0 or step == n_steps:
            history.append({"env_steps": agent.env_steps, "loss": loss, "epsilon": agent.epsilon})
            if progress is not None:
                progress(agent.env_steps, n_steps * train_config.n_envs, loss)
    seconds = time.perf_counter() - started
    agent.sync_target()  # the served network is the final policy net
    logger.info(
        "trained variant=%s seed=%d env_steps=%d updates=%d seconds=%.1f",
        agent_config.variant,
        train_config.seed,
        agent.env_steps,
        agent.updates,
        seconds,
    )
    metadata: dict[str, Any] = {
        "train_range": str(train_range),
        "env_config": config_to_dict(env_config),
        "train_config": config_to_dict(train_config),
        "env_steps": agent.env_steps,
        "updates": agent.updates,
    }
    return TrainResult(
        agent, agent.to_policy(spec, dataset.normalizer, metadata), seconds, agent.env_steps, agent.updates, history
    )


def _account_source(env: VectorTradingEnv, n_account: int) -> Callable[..., np.ndarray]:
    """Account features of the envs now (or of a market-only spec: an empty ``[n, 0]`` array)."""

    def account_of() -> np.ndarray:
        return env.account() if n_account else np.zeros((env.n_envs, 0), dtype=np.float32)

    return account_of
