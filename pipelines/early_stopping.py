"""Early stopping on a purged validation block inside the training window.

With ``TrainConfig.validation_days`` > 0 the training window ``[start, end)`` is cut in three:

- **fit** ``[start, end − validation_days − embargo)``: the only hours the environments trade and the
  replay holds;
- **embargo**: ``FeatureSpec.history_hours + 1`` hours (the longest feature lookback plus the window,
  plus the hour a transition's reward and next state reach): no fit transition reaches a validation
  hour, no validation state is built from an hour a fit transition was rewarded on;
- **validation** ``[end − validation_days, end)``: every ``validation_every`` gradient steps (and once
  at the end) each member's **policy net** trades it greedily, through the training environment's own
  rules and fees, and its return is the score. Each member keeps the weights of its best score
  (the "best checkpoint"); with ``patience`` > 0 training stops once every member has gone that many
  validations without improving. The normalisation is the dataset's (fitted by the caller on the
  whole training window: means and deviations of features, no rewards).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.config import EnvConfig, TrainConfig
from models.ensemble import EnsembleAgent
from models.env import VectorTradingEnv
from models.kline import HOUR_MS
from models.time_range import RangeError, TimeRange
from pipelines.dataset import MarketDataset

logger = logging.getLogger(__name__)
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class ValidationSplit:
    """The fit range and the consecutive validation rows of a training window."""

    fit: TimeRange
    validation: TimeRange
    rows: np.ndarray  # int64 [N] consecutive feature-table rows of the validation block


def split_validation(dataset: MarketDataset, train: TimeRange, config: TrainConfig) -> ValidationSplit | None:
    """The purged split of ``train`` (see the module doc), or None when early stopping is off."""
    if config.validation_days <= 0:
        return None
    start = train.end_ms - config.validation_days * DAY_MS
    fit_end = start - (dataset.spec.history_hours + 1) * HOUR_MS
    if fit_end - train.start_ms < 7 * DAY_MS:
        raise RangeError(f"training window {train} is too short for {config.validation_days} validation days")
    validation = TimeRange(start, train.end_ms, f"validation of {train}")
    found = dataset.range_rows(validation)
    rows = np.arange(int(found[0]), int(found[-1]) + 1, dtype=np.int64)
    return ValidationSplit(TimeRange(train.start_ms, fit_end, f"fit of {train}"), validation, rows)


class EarlyStopping:
    """Validates every member of an :class:`EnsembleAgent` and keeps each member's best policy weights."""

    def __init__(
        self, agent: EnsembleAgent, dataset: MarketDataset, split: ValidationSplit, config: EnvConfig, patience: int
    ) -> None:
        self.agent, self.split, self.config, self.patience = agent, split, config, patience
        self.close, self.tradable = dataset.table.close, dataset.table.tradable
        k = agent.members
        self.best = np.full(k, -np.inf)
        self.best_updates = np.zeros(k, dtype=np.int64)
        self.stale = np.zeros(k, dtype=np.int64)
        self.validations = 0
        self.best_params = [p.detach().clone() for p in agent.policy_net.parameters()]

    @torch.no_grad()
    def scores(self) -> np.ndarray:
        """float64 ``[K]``: each member's return on the validation block, greedy on its policy net."""
        agent, rows = self.agent, self.split.rows
        if agent.states is None:
            raise ValueError("early stopping needs the agent's states table (attach_states)")
        k, net = agent.members, agent.policy_net
        index = torch.from_numpy(rows).to(agent.device)
        windows = agent.states.index_select(0, index).unsqueeze(0).expand(k, *index.shape, *agent.states.shape[1:])
        embedding = net.embed(windows.contiguous())
        env = VectorTradingEnv(self.close, self.tradable, self.config, k, rows[:1], auto_reset=False,
                               last_row=int(rows[-1]))  # fmt: skip
        env.reset(np.full(k, rows[0]), np.full(k, rows[-1]))
        for i in range(len(rows) - 1):
            account = torch.from_numpy(env.account()).to(agent.device).unsqueeze(1) if agent.n_account else None
            q = net.head(embedding[:, i : i + 1], account)
            env.step(q[:, 0].argmax(dim=1).cpu().numpy())
        return env.equity() / self.config.capital - 1.0

    @torch.no_grad()
    def validate(self) -> np.ndarray:
        """Score the members now; keep the weights of those that improved. Returns the scores."""
        scores = self.scores()
        improved = scores > self.best + 1e-12
        self.validations += 1
        self.stale = np.where(improved, 0, self.stale + 1)
        if improved.any():
            members = torch.from_numpy(np.flatnonzero(improved)).to(self.agent.device)
            for best, param in zip(self.best_params, self.agent.policy_net.parameters(), strict=True):
                best[members] = param[members]
            self.best = np.where(improved, scores, self.best)
            self.best_updates = np.where(improved, self.agent.updates, self.best_updates)
        logger.info("validation updates=%d scores=%s best=%s", self.agent.updates, np.round(scores, 4).tolist(),
                    np.round(self.best, 4).tolist())  # fmt: skip
        return scores

    @property
    def should_stop(self) -> bool:
        """Every member has gone ``patience`` validations without improving (never when patience is 0)."""
        return self.patience > 0 and bool((self.stale >= self.patience).all())

    @torch.no_grad()
    def restore_best(self) -> None:
        """Put each member's best validated weights into its policy net (the caller syncs the target)."""
        for best, param in zip(self.best_params, self.agent.policy_net.parameters(), strict=True):
            param.copy_(best)

    def summary(self, members: range) -> dict[str, Any]:
        """The validation figures of ``members`` (one served policy) for its metadata."""
        return {
            "validation_range": str(self.split.validation),
            "validations": self.validations,
            "best_return": [float(self.best[k]) for k in members],
            "best_updates": [int(self.best_updates[k]) for k in members],
        }
