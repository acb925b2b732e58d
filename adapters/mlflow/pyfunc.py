"""The registered MLflow model: a pyfunc around :class:`~models.policy.Policy`.

What the model carries (docs/architecture.md, "MLflow"):

- artifact ``policy`` — the :meth:`Policy.save` directory: feature spec, fitted normalisation and the
  network weights (no pickled modules);
- ``code_paths`` (:func:`bundled_code`) — the ``models`` package and this module (with the ``__init__``
  files of its packages), so ``load_context`` rebuilds the policy with the same feature transform that
  training, evaluation and the stream use, in any process that has the pip requirements, with or
  without the repository on its path.

Input: a kline frame in the contract form of models/kline.py with the last
:attr:`Policy.history_hours` hourly klines of every context symbol (``interval`` may be left out; the
optional columns may be NaN). Output: one row for the latest hour — ``open_time``, ``q_hold``,
``q_buy``, ``q_sell``, ``action`` (0 hold, 1 buy, 2 sell).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ColSpec, Schema

import models
from models.features import FeatureError
from models.kline import FRAME_COLUMNS, HOUR_MS, OPTIONAL_COLUMNS, conform_frame
from models.policy import Policy

#: Name of the artifact that holds the Policy.save directory (``<model>/artifacts/policy``).
POLICY_ARTIFACT = "policy"
#: The ``models`` package directory, bundled with every logged model.
MODELS_PACKAGE_DIR = Path(models.__file__).resolve().parent
#: This module and the ``__init__`` files of its packages (``adapters``, ``adapters.mlflow``): the pickled
#: :class:`KlinePolicyModel` names its class by module, so a loaded model must be able to import it.
_ADAPTERS_DIR = Path(__file__).resolve().parents[1]
_PYFUNC_MODULE_FILES = (
    _ADAPTERS_DIR / "__init__.py",
    _ADAPTERS_DIR / "mlflow" / "__init__.py",
    Path(__file__).resolve(),
)
OUTPUT_COLUMNS = ("open_time", "q_hold", "q_buy", "q_sell", "action")

_INPUT_TYPES = {
    "symbol": "string",
    "interval": "string",
    "open_time": "long",
    "open": "double",
    "high": "double",
    "low": "double",
    "close": "double",
    "volume": "double",
    "close_time": "double",  # NaN-able in sources without it
    "quote_volume": "double",
    "count": "double",
    "taker_buy_volume": "double",
    "taker_buy_quote_volume": "double",
}


class KlinePolicyModel(PythonModel):
    """Klines of the context symbols → Q-values and greedy action at the latest hour."""

    def __init__(self) -> None:
        self.policy: Policy | None = None

    def load_context(self, context: Any) -> None:
        self.policy = Policy.load(context.artifacts[POLICY_ARTIFACT], device="cpu")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.policy is None:
            raise RuntimeError("the model was not loaded through mlflow.pyfunc.load_model (no load_context)")
        frame = input_frame(model_input)
        _check_history(frame, self.policy)
        decision = self.policy.decide(frame)
        return decision_frame(decision.open_time, decision.q_values, decision.action)


def input_frame(model_input: pd.DataFrame) -> pd.DataFrame:
    """The pyfunc input (or an input example) as a contract-form kline frame."""
    frame = pd.DataFrame(model_input).copy()
    if "interval" not in frame.columns:
        frame["interval"] = "1h"
    return conform_frame(frame)


def _check_history(frame: pd.DataFrame, policy: Policy) -> None:
    """Fail with a readable error when the input spans fewer hours than the policy needs."""
    hours = 0 if frame.empty else int((frame["open_time"].max() - frame["open_time"].min()) // HOUR_MS) + 1
    if hours < policy.history_hours:
        raise FeatureError(
            f"the input spans {hours} hours; send the last {policy.history_hours} hourly klines of "
            f"{', '.join(policy.spec.symbols)}"
        )


def decision_frame(open_time: int, q_values: np.ndarray, action: int) -> pd.DataFrame:
    """The pyfunc output row."""
    q = np.asarray(q_values, dtype=np.float32)
    return pd.DataFrame(
        {
            "open_time": np.array([open_time], dtype=np.int64),
            "q_hold": q[:1],
            "q_buy": q[1:2],
            "q_sell": q[2:3],
            "action": np.array([action], dtype=np.int64),
        }
    )


def model_signature() -> ModelSignature:
    """Input = kline rows (optional columns not required), output = one decision row."""
    inputs = Schema(
        [
            ColSpec(_INPUT_TYPES[name], name, required=name not in (*OPTIONAL_COLUMNS, "interval", "close_time"))
            for name in FRAME_COLUMNS
        ]
    )
    outputs = Schema(
        [
            ColSpec("long", "open_time"),
            ColSpec("float", "q_hold"),
            ColSpec("float", "q_buy"),
            ColSpec("float", "q_sell"),
            ColSpec("long", "action"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(klines: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """The last :attr:`Policy.history_hours` hours of every context symbol of ``klines``, in the
    pyfunc's input types (integers that may be missing become floats)."""
    frame = conform_frame(klines)
    frame = frame[frame["symbol"].isin(policy.spec.symbols)]
    latest = int(frame["open_time"].max())
    first = latest - (policy.history_hours - 1) * HOUR_MS
    frame = frame[frame["open_time"] >= first]
    out = pd.DataFrame({name: frame[name] for name in FRAME_COLUMNS})
    for name, kind in _INPUT_TYPES.items():
        if kind == "double":
            out[name] = out[name].astype("float64")
        elif kind == "string":
            out[name] = out[name].astype(object)
    return out.reset_index(drop=True)


@contextmanager
def bundled_code() -> Iterator[list[str]]:
    """The ``code_paths`` of a logged model: the ``models`` package and, staged in a temporary folder
    (removed on exit), ``adapters/__init__.py``, ``adapters/mlflow/__init__.py`` and this module, not
    the rest of the adapters (Kafka, Cassandra, ...), which loading the model never needs."""
    with tempfile.TemporaryDirectory(prefix="klinestream-code-") as tmp:
        for source in _PYFUNC_MODULE_FILES:
            target = Path(tmp) / source.relative_to(_ADAPTERS_DIR.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        yield [str(MODELS_PACKAGE_DIR), str(Path(tmp) / "adapters")]
