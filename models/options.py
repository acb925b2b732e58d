"""Agent options: named overrides of the training configs, parsed at the edge and validated at once.

An option is a field of :class:`~models.config.AgentConfig`, :class:`~models.config.EnvConfig` or
:class:`~models.config.TrainConfig` (e.g. ``min_hold_hours=4``, ``position_step=0.25``,
``turnover_penalty=0.5``, ``dueling=true``, ``n_step=3``, ``ensemble_members=3``,
``ensemble_rule=vote``, ``validation_days=28``), applied on top of a default configuration
(pipelines.train.default_configs). The CLI (``--option NAME=VALUE``), the retrain DAG (``options``
param) and the walk-forward take the same options; the resulting configs are logged as MLflow params
(adapters.mlflow.tracking.training_params) and saved in the policy's metadata, so the backtest, the
pyfunc and the stream trade by the same rules.

Fields that have their own flag (:data:`FLAG_FIELDS`: the variant, the reward, fees, seeds, the
device) are not options.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, fields, replace
from typing import Any

from models.accounting import check_rules
from models.config import AgentConfig, EnvConfig, TrainConfig

Configs = tuple[AgentConfig, EnvConfig, TrainConfig]
FLAG_FIELDS = frozenset({"variant", "reward", "accounting", "fee_rate", "slippage_bps", "seed", "device", "threads"})
"""Config fields set by their own flag or setting, never by an option."""
_KINDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "text"}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def option_types() -> dict[str, type]:
    """Every option name → the type of its default value (bool, int, float or str)."""
    types: dict[str, type] = {}
    for cls in (AgentConfig, EnvConfig, TrainConfig):
        for field in fields(cls):
            if field.name not in FLAG_FIELDS and field.default is not MISSING:
                types[field.name] = type(field.default)
    return types


def _coerce(name: str, value: Any, kind: type) -> Any:
    """``value`` (text from a command line, or a JSON value) as ``kind``; ValueError naming the option."""
    text = str(value).strip().lower()
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and text.lstrip("+-").isdigit():
            return int(text)
    elif kind is float:
        number = _finite(value)
        if number is not None:
            return number
    elif isinstance(value, str):
        return value.strip()
    return _fail(name, value, kind)


def _finite(value: Any) -> float | None:
    """A finite float from a number or its text, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _fail(name: str, value: Any, kind: type) -> Any:
    raise ValueError(f"option {name}: {value!r} is not {_KINDS.get(kind, kind.__name__)}")


def parse_options(options: Mapping[str, Any] | Iterable[str]) -> dict[str, Any]:
    """Options from ``NAME=VALUE`` texts or a mapping, each value as its field's type. ValueError for an
    unknown name, a flag's field, a repeated name or a value of the wrong type."""
    types = option_types()
    pairs: list[tuple[str, Any]] = []
    if isinstance(options, Mapping):
        pairs = [(str(k), v) for k, v in options.items()]
    else:
        for text in options:
            name, sep, value = text.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"option {text!r}: expected NAME=VALUE, e.g. min_hold_hours=4")
            pairs.append((name.strip(), value))
    parsed: dict[str, Any] = {}
    for name, value in pairs:
        if name in FLAG_FIELDS:
            raise ValueError(f"option {name}: set it with its own flag, not as an option")
        if name not in types:
            raise ValueError(f"unknown option {name!r}; choose among {sorted(types)}")
        if name in parsed:
            raise ValueError(f"option {name} given twice")
        parsed[name] = _coerce(name, value, types[name])
    return parsed


def apply_options(configs: Configs, options: Mapping[str, Any]) -> Configs:
    """``configs`` with ``options`` (parsed by :func:`parse_options`) set, validated as a whole: the
    configs' own checks and the accounting's rules (models.accounting.check_rules). ValueError says why."""
    parsed = parse_options(options)

    def updated(config: Any) -> Any:
        names = {f.name for f in fields(config)}
        return replace(config, **{k: v for k, v in parsed.items() if k in names})

    agent, env, train = configs
    agent, env, train = updated(agent), updated(env), updated(train)
    check_rules(env)
    return agent, env, train
