"""The serving-ready policy: feature spec + fitted normalisation + Q-network weights + variant config.

Training (evaluation of a trained agent), evaluation, the MLflow pyfunc and the live stream all
decide through :class:`Policy`, so a stream decision equals the backtest decision on the same klines.

Files written by :meth:`Policy.save` (no pickled modules):

- ``policy.json`` — format version, feature spec, agent config, free-form metadata;
- ``normalizer.json`` — per-feature mean and std fitted on the training range;
- ``weights.pt`` — the acting network's ``state_dict`` (tensors only; loaded with ``weights_only=True``):
  one Q-network, or an ensemble's members (``members.<k>.…``) when ``agent_config.ensemble_members`` > 1
  (models/networks.py :class:`~models.networks.EnsembleNetwork`: mean Q or vote).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.config import AgentConfig, EnvConfig, config_from_dict, config_to_dict
from models.features import (
    FLAT_ACCOUNT,
    FeatureError,
    FeatureSpec,
    FeatureTable,
    Normalizer,
    compute_feature_table,
    state_rows,
    window_index,
)
from models.networks import build_policy_network

POLICY_FORMAT_VERSION = 1
POLICY_FILE, NORMALIZER_FILE, WEIGHTS_FILE = "policy.json", "normalizer.json", "weights.pt"
ACTIONS = ("hold", "buy", "sell")


@dataclass(frozen=True)
class Decision:
    """One decision for the latest hour of the klines given."""

    open_time: int
    """open_time (ms) of the hour the decision is taken at (its close)."""
    action: int
    """0 hold, 1 buy, 2 sell."""
    q_values: np.ndarray
    """float32 [3] Q-values of hold, buy, sell."""
    close: float
    """The traded symbol's close at that hour."""
    tradable: bool
    """False when the traded symbol's kline of that hour is missing (then the action is hold)."""


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Policy:
    """A trained Q-network with everything needed to turn klines into decisions."""

    def __init__(
        self,
        spec: FeatureSpec,
        normalizer: Normalizer,
        agent_config: AgentConfig,
        network: nn.Module,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.normalizer = normalizer
        self.agent_config = agent_config
        self.network = network.eval()
        self.metadata = dict(metadata or {})
        self.device = next(network.parameters()).device

    @property
    def variant(self) -> str:
        return self.agent_config.variant

    @property
    def env_config(self) -> EnvConfig:
        """The rules the policy was trained with (metadata ``env_config``; the defaults when absent)."""
        return config_from_dict(EnvConfig, dict(self.metadata.get("env_config") or {}))

    @property
    def history_hours(self) -> int:
        """Hours of klines per context symbol that :meth:`q_values` needs (the last N hours)."""
        return self.spec.history_hours

    # --- the one feature path -----------------------------------------------------------------
    def feature_rows(self, klines: pd.DataFrame) -> tuple[FeatureTable, np.ndarray]:
        """Feature table of a contract-form kline frame and its normalised float32 rows."""
        table = compute_feature_table(klines, self.spec)
        return table, self.normalizer.transform(table.values)

    def states(self, klines: pd.DataFrame) -> tuple[FeatureTable, np.ndarray, np.ndarray]:
        """(table, row indices with a state, float32 states ``[n, window, n_features]``)."""
        table, rows = self.feature_rows(klines)
        index = np.flatnonzero(state_rows(table, self.spec.window))
        return table, index, rows[window_index(index, self.spec.window)]

    @torch.inference_mode()
    def q_values_from_states(
        self, states: np.ndarray | torch.Tensor, accounts: np.ndarray | torch.Tensor | None = None
    ) -> np.ndarray:
        """float32 ``[n, 3]`` Q-values of market windows ``[n, window, n_features]`` and account
        features ``[n, 3]`` (``None`` = a flat account with cash; ignored by a market-only spec)."""
        market = torch.as_tensor(states, dtype=torch.float32).to(self.device)
        account = None
        if self.spec.n_account:
            if accounts is None:
                accounts = np.broadcast_to(FLAT_ACCOUNT, (len(market), len(FLAT_ACCOUNT))).copy()
            account = torch.as_tensor(accounts, dtype=torch.float32).to(self.device)
        return self.network(market, account).cpu().numpy()

    # --- serving API --------------------------------------------------------------------------
    def q_values(self, klines: pd.DataFrame, account: np.ndarray | None = None) -> np.ndarray:
        """float32 ``[3]`` Q-values (hold, buy, sell) at the latest hour of ``klines``.

        ``klines``: contract-form frame (models/kline.py columns, at least symbol, open_time, open,
        high, low, close, volume) with the last :attr:`history_hours` hourly klines of every context
        symbol; the latest hour is the largest open_time present (send it once all symbols have it).
        ``account``: float32 ``[3]`` from :func:`models.features.account_features` (exposure, entry
        return, can_buy) of the account that trades; ``None`` = flat with cash.
        """
        return self.decide(klines, account).q_values

    def act(self, klines: pd.DataFrame, account: np.ndarray | None = None) -> int:
        """Greedy action (0 hold, 1 buy, 2 sell) at the latest hour of ``klines``."""
        return self.decide(klines, account).action

    def decide(self, klines: pd.DataFrame, account: np.ndarray | None = None) -> Decision:
        """Q-values and greedy action at the latest hour of ``klines`` (see :meth:`q_values`)."""
        table, rows = self.feature_rows(klines)
        last = len(table) - 1
        if not state_rows(table, self.spec.window)[last]:
            raise FeatureError(
                f"need the last {self.history_hours} hourly klines of {', '.join(self.spec.symbols)} "
                f"to decide at open_time {int(table.open_time[last])}"
            )
        state = rows[window_index(np.array([last]), self.spec.window)]
        q = self.q_values_from_states(state, None if account is None else np.asarray(account)[None, :])[0]
        tradable = bool(table.tradable[last])
        action = int(np.argmax(q)) if tradable else 0
        return Decision(int(table.open_time[last]), action, q, float(table.close[last]), tradable)

    # --- files --------------------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write the policy files into ``directory`` (created); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        document = {
            "format_version": POLICY_FORMAT_VERSION,
            "feature_spec": self.spec.to_dict(),
            "agent_config": config_to_dict(self.agent_config),
            "metadata": self.metadata,
        }
        (directory / POLICY_FILE).write_text(json.dumps(document, indent=2, sort_keys=True))
        (directory / NORMALIZER_FILE).write_text(self.normalizer.to_json())
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        return directory

    @classmethod
    def load(cls, directory: Path | str, device: str = "cpu") -> Policy:
        """Rebuild a policy from the files of :meth:`save`."""
        directory = Path(directory)
        try:
            document = json.loads((directory / POLICY_FILE).read_text())
            normalizer = Normalizer.from_json((directory / NORMALIZER_FILE).read_text())
        except FileNotFoundError as exc:
            raise FeatureError(f"{directory} is not a saved policy: {exc.filename} is missing") from exc
        if document.get("format_version") != POLICY_FORMAT_VERSION:
            raise FeatureError(f"policy format {document.get('format_version')} is not {POLICY_FORMAT_VERSION}")
        spec = FeatureSpec.from_dict(document["feature_spec"])
        config = config_from_dict(AgentConfig, document["agent_config"])
        target = resolve_device(device)
        network = build_policy_network(config, spec.window, spec.n_features, spec.n_account).to(target)
        weights = torch.load(directory / WEIGHTS_FILE, map_location=target, weights_only=True)
        network.load_state_dict(weights)
        return cls(spec, normalizer, config, network, document.get("metadata", {}))
