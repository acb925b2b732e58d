"""Hyperparameters as frozen dataclasses (CleanRL style: one line of documentation per field).

:class:`AgentConfig` defaults are the reference system's (shared/DESIGN.md §1); :class:`TrainConfig`
says how the vectorised trainer feeds the agent; :class:`EnvConfig` the accounting and the reward.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar, get_args

Accounting = Literal["unit", "portfolio"]
Device = Literal["auto", "cpu", "cuda"]
"""Where torch computes: "auto" = CUDA when available, else the CPU."""
Variant = Literal["linear", "lstm"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
"""Every Q-network variant (the keys of ``models.networks.NETWORKS``)."""
RewardKind = Literal["reference", "log_return", "risk"]
EnsembleRule = Literal["mean", "vote"]
ACCOUNTINGS: tuple[Accounting, ...] = get_args(Accounting)
"""Every accounting, in the order of :data:`Accounting` (models/accounting.py holds their rules)."""
REWARD_KINDS: tuple[RewardKind, ...] = get_args(RewardKind)
"""Every reward kind, in the order of :data:`RewardKind` (models/accounting.py computes them)."""
ENSEMBLE_RULES: tuple[EnsembleRule, ...] = get_args(EnsembleRule)
"""How the members of an ensemble policy act together (models/networks.py :class:`EnsembleNetwork`)."""
DEFAULT_CAPITAL = 100_000.0
"""Starting cash in the quote currency (the reference system's $100,000): environments, traders, dashboards."""
DEFAULT_REWARD: RewardKind = "risk"
"""The reward the platform trains with (portfolio accounting, fees and slippage); "reference" reproduces the paper."""
DEFAULT_FEE_RATE = 0.001
"""Fee per side the platform trains and evaluates with (Binance spot's 0.1%)."""


@dataclass(frozen=True)
class AgentConfig:
    variant: str = "linear"
    """Q-network variant: "linear" (LinearQNetwork) or "lstm" (LstmQNetwork)."""
    gamma: float = 0.95
    """Discount factor."""
    learning_rate: float = 0.005
    """RMSprop learning rate."""
    batch_size: int = 32
    """Transitions per gradient step."""
    buffer_size: int = 100_000
    """Replay capacity in transitions."""
    epsilon_start: float = 1.0
    """Initial exploration probability."""
    epsilon_end: float = 0.01
    """Floor of the exploration probability."""
    epsilon_decay: float = 0.995
    """Multiplicative epsilon decay per decay call (one per vectorised env step)."""
    target_sync_every: int = 100
    """Gradient steps between hard target-network syncs (ignored when tau < 1)."""
    tau: float = 1.0
    """Polyak factor: 1.0 = hard sync every target_sync_every steps, < 1 = soft update every step."""
    double_dqn: bool = False
    """Pick the bootstrap action with the policy net and value it with the target net."""
    max_grad_norm: float = 10.0
    """Gradient-norm clipping threshold."""
    huber_delta: float = 1.0
    """Huber loss threshold."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before learning (unit-accounting profits are in dollars)."""
    dueling: bool = False
    """Dueling head: Q = V + A − mean(A) from separate value and advantage streams."""
    n_step: int = 1
    """Bootstrap after this many rewards (n-step returns, discounted by gamma); 1 = one-step DQN."""
    ensemble_members: int = 1
    """Networks (seeds) trained together and served as one policy; 1 = a single network."""
    ensemble_rule: EnsembleRule = "mean"
    """How an ensemble acts: "mean" = argmax of the members' mean Q; "vote" = the members' majority action."""

    def __post_init__(self) -> None:
        if self.n_step < 1 or self.ensemble_members < 1:
            raise ValueError(f"n_step ({self.n_step}) and ensemble_members ({self.ensemble_members}) must be >= 1")
        if self.ensemble_rule not in ENSEMBLE_RULES:
            raise ValueError(f"unknown ensemble_rule {self.ensemble_rule!r}; choose one of {ENSEMBLE_RULES}")


@dataclass(frozen=True)
class EnvConfig:
    accounting: Accounting = "unit"
    """"unit" = the reference's one-BTC FIFO accounting; "portfolio" = position as a fraction of equity."""
    reward: RewardKind = "reference"
    """"reference" = max(profit, 0) on a sell; "log_return" = log equity change; "risk" = minus drawdown penalty."""
    capital: float = DEFAULT_CAPITAL
    """Starting cash in quote currency."""
    fee_rate: float = 0.0
    """Fee per side as a fraction of notional (portfolio accounting)."""
    slippage_bps: float = 0.0
    """Price slippage per trade in basis points (portfolio accounting)."""
    position_step: float = 0.2
    """Portfolio accounting: change of the position fraction per buy/sell."""
    max_position: float = 1.0
    """Portfolio accounting: largest position fraction (1.0 = all equity, no leverage)."""
    drawdown_penalty: float = 1.0
    """Risk reward: weight of the increase of drawdown."""
    turnover_penalty: float = 0.0
    """log_return / risk rewards: minus this × traded notional / equity (0 = only the fees)."""
    min_hold_hours: int = 0
    """A buy or sell less than this many hours after the last fill executes as hold (0 or 1 = no limit)."""
    episode_hours: int = 720
    """Training episode length in hours (random starts); evaluation runs the whole range."""


@dataclass(frozen=True)
class TrainConfig:
    n_envs: int = 64
    """Environments stepped at once."""
    total_env_steps: int = 400_000
    """Transitions collected in total (over all environments)."""
    learning_starts: int = 5_000
    """Transitions collected before learning starts."""
    replay_ratio: int = 8
    """Sampled transitions per collected transition (batch_size × updates / n_envs)."""
    seed: int = 0
    """Seed of numpy and torch."""
    device: str = "cpu"
    """"cpu", "cuda" or "auto"."""
    threads: int = 2
    """torch CPU threads."""
    validation_days: int = 0
    """Early stopping: the last days of the training window (after an embargo) validate; 0 = off."""
    validation_every: int = 2_000
    """Early stopping: gradient steps between validations (the best validated weights are kept)."""
    patience: int = 0
    """Early stopping: stop after this many validations without improvement; 0 = train to the end."""

    def __post_init__(self) -> None:
        if self.validation_days < 0 or self.patience < 0 or self.validation_every < 1:
            raise ValueError(
                f"need validation_days ({self.validation_days}) >= 0, patience ({self.patience}) >= 0 and "
                f"validation_every ({self.validation_every}) >= 1"
            )
        if self.patience and not self.validation_days:
            raise ValueError(f"patience ({self.patience}) needs early stopping: set validation_days > 0")


C = TypeVar("C", AgentConfig, EnvConfig, TrainConfig)


def config_to_dict(config: AgentConfig | EnvConfig | TrainConfig) -> dict[str, Any]:
    return asdict(config)


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a config; unknown keys are an error (a typo must not silently become a default)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}")
    return cls(**data)
