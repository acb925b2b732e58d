"""Training: the vectorised DQN loop over a :class:`~pipelines.dataset.MarketDataset`.

Reads like the algorithm: ``n_envs`` environments act with the target net (epsilon-greedy), their
transitions go into an index replay buffer, and after each vectorised step the policy net takes
``replay_ratio × n_envs / batch_size`` gradient steps. The replay stores feature-table rows and
account features; windows are gathered from one preallocated tensor of all training states.

Several seeds train together as a batched ensemble (:func:`train_ensemble`, models/ensemble.py): K
independent agents whose K × ``n_envs`` environments step as one and whose networks learn in one
batched step; :func:`train_agent` is the ensemble of one seed, so every caller trains through the
same loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.agent import DqnAgent
from models.config import (
    DEFAULT_FEE_RATE,
    DEFAULT_REWARD,
    REWARD_KINDS,
    AgentConfig,
    EnvConfig,
    TrainConfig,
    config_to_dict,
)
from models.ensemble import EnsembleAgent
from models.env import VectorTradingEnv
from models.options import parse_options
from models.policy import Policy
from models.replay import EnsembleReplayBuffer, NStepWindow
from models.time_range import TimeRange
from pipelines.dataset import MarketDataset
from pipelines.early_stopping import EarlyStopping, split_validation

if TYPE_CHECKING:
    from pipelines.defaults import ProjectDefaults

logger = logging.getLogger(__name__)

#: Called with (env steps done, env steps total, latest loss).
ProgressFn = Callable[[int, int, float], None]


def default_configs(
    variant: str,
    seed: int = 0,
    device: str = "cpu",
    reward: str = DEFAULT_REWARD,
    fee_rate: float = DEFAULT_FEE_RATE,
    slippage_bps: float = 0.0,
) -> tuple[AgentConfig, EnvConfig, TrainConfig]:
    """The project's default training setup (fast, vectorised).

    Reference hyperparameters (gamma 0.95, RMSprop lr 0.005, epsilon 1.0 → 0.01 at 0.995, Huber,
    replay 100k) with large batches over many environments. ``reward``: the platform trades with
    :data:`~models.config.DEFAULT_REWARD` ("risk"): portfolio accounting paying ``fee_rate`` per side
    and ``slippage_bps`` (pass the settings' slippage), log returns scaled ×100 minus the drawdown
    increase; "log_return" without the drawdown term; "reference" = the reference protocol's
    max(profit, 0) on a sell in unit accounting without fees (scaled to thousands of dollars), kept to
    reproduce the paper's Table I, never what the platform trades with.
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
        env = EnvConfig(accounting="portfolio", reward=reward, fee_rate=fee_rate, slippage_bps=slippage_bps)
        scale = 100.0
    agent = AgentConfig(variant=variant, batch_size=batch, target_sync_every=50, reward_scale=scale)
    return agent, env, replace(train, seed=seed, device=device)


def checked_options(
    options: Mapping[str, Any] | Iterable[str],
    variants: Sequence[str],
    reward: str | None = None,
    defaults: ProjectDefaults | None = None,
) -> dict[str, Any]:
    """``options`` (models/options.py: a mapping or ``NAME=VALUE`` texts) parsed to their types and valid
    on every variant's default configuration: the one the run will train, i.e. the configuration of
    ``defaults`` (None = the committed defaults file) or, with another ``reward``, that reward's preset
    (pipelines.defaults.default_configuration). ValueError says which option is wrong and why."""
    from pipelines.defaults import default_configuration, load_defaults  # it imports this module's presets

    parsed = parse_options(options)
    defaults = defaults or load_defaults()  # read once, not once per variant
    for variant in variants:
        default_configuration(variant, reward=reward, defaults=defaults, options=parsed)
    return parsed


@dataclass
class TrainResult:
    agent: DqnAgent
    """The (first) network's learner, checkpointable; the served policy may hold several networks."""
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
    """Train one agent (seed ``train_config.seed``) on ``train_range``: an ensemble of one."""
    return train_ensemble(dataset, train_range, agent_config, env_config, train_config, progress=progress)[0]


class EnsembleEnv(VectorTradingEnv):
    """K blocks of ``n_envs`` environments, one block per ensemble member; block ``k`` draws its episode
    starts from its own generator seeded ``seeds[k]``, as a separate ``VectorTradingEnv(seed=seeds[k])``
    would."""

    def __init__(self, dataset: MarketDataset, config: EnvConfig, n_envs: int, rows: np.ndarray, seeds: Sequence[int]):
        super().__init__(
            dataset.table.close,
            dataset.table.tradable,
            config,
            n_envs * len(seeds),
            rows[:-1],
            seed=int(seeds[0]),
            last_row=int(rows[-1]),
        )
        self.block = n_envs
        self.member_rngs = [np.random.default_rng(int(s)) for s in seeds]

    def _reset(self, mask: np.ndarray, starts: np.ndarray | None = None, stops: np.ndarray | None = None) -> None:
        if starts is None:
            blocks = np.asarray(mask, dtype=bool).reshape(len(self.member_rngs), self.block)
            starts = np.concatenate(
                [
                    rng.choice(self.start_rows, size=int(b.sum())) if b.any() else np.zeros(0, np.int64)
                    for rng, b in zip(self.member_rngs, blocks, strict=True)
                ]
            )
        super()._reset(mask, starts, stops)


def member_seeds(seeds: Sequence[int], members: int) -> tuple[int, ...]:
    """The network seeds of the served policies of ``seeds``, ``members`` each: seed ``s`` → ``s·M … s·M + M − 1``
    (a policy of one member is its seed's agent)."""
    return tuple(s * members + j for s in seeds for j in range(members))


def train_ensemble(
    dataset: MarketDataset,
    train_range: TimeRange,
    agent_config: AgentConfig,
    env_config: EnvConfig,
    train_config: TrainConfig,
    seeds: Sequence[int] = (),
    progress: ProgressFn | None = None,
) -> list[TrainResult]:
    """Train one served policy per seed (default ``train_config.seed``) as a batched ensemble; one result each.

    A policy is one network, or ``agent_config.ensemble_members`` networks (:func:`member_seeds`) served
    together (models.networks.EnsembleNetwork). Every network has its own weights, replay, epsilon,
    exploration generator and episode starts (see models/ensemble.py); all K × ``n_envs`` environments
    step as one vectorised env and all networks learn in one batched step. With ``n_step`` > 1 the
    replay holds n-step transitions (models.replay.NStepWindow); with ``validation_days`` > 0 training
    stops early on a purged validation block and keeps each network's best weights
    (pipelines/early_stopping.py). ``seconds`` of each result is the ensemble's wall time.
    """
    seeds = tuple(seeds) or (train_config.seed,)
    networks = member_seeds(seeds, agent_config.ensemble_members)
    torch.set_num_threads(train_config.threads)
    torch.set_flush_denormal(True)
    np.random.seed(seeds[0])
    spec, k, n = dataset.spec, len(networks), train_config.n_envs
    agent = EnsembleAgent(agent_config, spec.window, spec.n_features, spec.n_account, train_config.device, networks)
    split = split_validation(dataset, train_range, train_config)
    rows = dataset.range_rows(split.fit if split else train_range)
    last = int(split.rows[-1]) if split else int(rows[-1])
    agent.attach_states(torch.from_numpy(dataset.windows(upto=last)).to(agent.device))
    env = EnsembleEnv(dataset, env_config, n, rows, networks)
    replay = EnsembleReplayBuffer(networks, agent_config.buffer_size, spec.n_account, agent.device)
    stopper = EarlyStopping(agent, dataset, split, env_config, train_config.patience) if split else None
    n_step = NStepWindow(agent_config.n_step, agent_config.gamma) if agent_config.n_step > 1 else None
    account_of = _account_source(env, spec.n_account)
    updates_per_step = max(1, math.ceil(train_config.replay_ratio * n / agent_config.batch_size))
    n_steps = max(1, train_config.total_env_steps // n)
    histories: list[list[dict[str, float]]] = [[] for _ in networks]
    current, account = env.reset(), account_of()
    loss, started = torch.full((k,), float("nan")), time.perf_counter()
    for step in range(1, n_steps + 1):
        current_rows = torch.from_numpy(current).to(agent.device).view(k, n)
        actions = agent.act_rows(current_rows, torch.from_numpy(account).view(k, n, account.shape[1])).reshape(-1)
        result = env.step(actions)
        next_account = result.next_accounts if spec.n_account else account
        one_step = (current, account, actions, result.rewards, result.next_rows, next_account, result.terminal)
        transitions = n_step.push(*one_step[:6], result.truncated) if n_step else one_step
        if transitions is not None:
            replay.add(*(a.reshape(k, n, *a.shape[1:]) for a in transitions))
        current = env.rows.copy()
        account = account_of() if result.truncated.any() else next_account
        agent.env_steps += n
        agent.decay_epsilon()
        if len(replay) >= train_config.learning_starts:
            for _ in range(updates_per_step):
                loss = agent.learn_rows(replay.sample(agent_config.batch_size))
                if stopper and agent.updates % train_config.validation_every == 0:
                    stopper.validate()
        if step % 100 == 0 or step == n_steps:
            for history, member_loss, epsilon in zip(histories, loss.tolist(), agent.epsilon, strict=True):
                history.append({"env_steps": agent.env_steps, "loss": member_loss, "epsilon": float(epsilon)})
            if progress is not None:
                progress(agent.env_steps, n_steps * n, float(loss.mean()))
        if stopper and stopper.should_stop:
            logger.info("early stop env_steps=%d updates=%d", agent.env_steps, agent.updates)
            break
    if stopper:
        stopper.validate()  # the final weights compete too
        stopper.restore_best()
    seconds = time.perf_counter() - started
    agent.sync_target()  # the served network is the (best validated or final) policy net
    logger.info(
        "trained variant=%s seeds=%s networks=%s env_steps=%d per network updates=%d seconds=%.1f",
        agent_config.variant,
        list(seeds),
        list(networks),
        agent.env_steps,
        agent.updates,
        seconds,
    )
    m = agent_config.ensemble_members
    groups = [(range(i * m, (i + 1) * m), replace(train_config, seed=seed)) for i, seed in enumerate(seeds)]
    return [
        _policy_result(agent, members, dataset, train_range, env_config, config, seconds, histories, stopper)
        for members, config in groups
    ]


def _policy_result(
    agent: EnsembleAgent,
    members: range,
    dataset: MarketDataset,
    train_range: TimeRange,
    env_config: EnvConfig,
    train_config: TrainConfig,
    seconds: float,
    histories: list[list[dict[str, float]]],
    stopper: EarlyStopping | None,
) -> TrainResult:
    metadata: dict[str, Any] = {
        "train_range": str(train_range),
        "env_config": config_to_dict(env_config),
        "train_config": config_to_dict(train_config),
        "env_steps": agent.env_steps,
        "updates": agent.updates,
        "network_seeds": [agent.seeds[k] for k in members],
    }
    if stopper is not None:
        metadata["early_stopping"] = stopper.summary(members)
    policy = agent.group_policy(members, dataset.spec, dataset.normalizer, metadata)
    first = histories[members[0]]
    history = [
        {**entry, "loss": float(np.mean([histories[k][i]["loss"] for k in members]))} for i, entry in enumerate(first)
    ]
    return TrainResult(agent.member_agent(members[0]), policy, seconds, agent.env_steps, agent.updates, history)


def _account_source(env: VectorTradingEnv, n_account: int) -> Callable[..., np.ndarray]:
    """Account features of the envs now (or of a market-only spec: an empty ``[n, 0]`` array)."""

    def account_of() -> np.ndarray:
        return env.account() if n_account else np.zeros((env.n_envs, 0), dtype=np.float32)

    return account_of
