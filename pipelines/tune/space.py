"""Search spaces: which config fields a study varies, over which values, declared by dotted name.

A space is a YAML (or JSON) file (``pipelines/tune/spaces/<name>.yaml``, or any path)::

    fixed:                          # set in every trial, not searched
      env.fee_rate: 0.001
    params:                         # searched, in this order
      agent.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}    # float (log scale)
      agent.target_sync_every: {low: 25, high: 200, step: 25}        # int (integers low/high)
      env.reward: {choices: [log_return, risk]}                      # categorical
      env.drawdown_penalty: {low: 0.1, high: 10.0, log: true, when: {env.reward: risk}}
      features.set: {choices: [reference, indicators, extended]}

Names are fields of the config dataclasses (pipelines/defaults.py: ``agent.*``, ``env.*``, ``train.*``,
``features.*``): a field someone adds to ``AgentConfig`` can be searched by adding a line here. Every value
(each choice, ``low`` and ``high``) is checked against its field's type when the space loads. ``when``
makes a parameter conditional: it is sampled only when the named earlier parameters (or fixed values) take
one of the given values, and otherwise keeps the preset's value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from models.errors import PermanentError
from pipelines.defaults import check_value

if TYPE_CHECKING:
    import optuna

SPACES_DIR = Path(__file__).with_name("spaces")
DEFAULT_SPACE = "default"


class SpaceError(PermanentError):
    """A search space that cannot be used (unknown field, bad range, bad condition)."""


@dataclass(frozen=True)
class Param:
    """One searched config field."""

    name: str
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether its conditions hold for the values sampled (or fixed) so far."""
        return all(values.get(name) in allowed for name, allowed in self.when.items())

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def values(self) -> tuple[Any, ...]:
        """The values it can take, when they are few (choices) or its bounds."""
        return self.choices if self.kind == "categorical" else (self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"choices": list(self.choices)} if self.kind == "categorical" else {
            "low": self.low, "high": self.high, **({"log": True} if self.log else {}),
            **({"step": self.step} if self.step is not None else {}),
        }  # fmt: skip
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out


def _param(name: str, spec: Any, known: set[str]) -> Param:
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{name}: expected {{choices: [...]}} or {{low: .., high: ..}}, got {spec!r}")
    unknown = sorted(set(spec) - {"choices", "low", "high", "log", "step", "when"})
    if unknown:
        raise SpaceError(f"{name}: unknown keys {unknown}")
    when_spec = spec.get("when") or {}
    missing = sorted(set(when_spec) - known)
    if missing:
        raise SpaceError(f"{name}: its condition names {missing}, which are not fixed or searched before it")
    when = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in when_spec.items()}
    if "choices" in spec:
        choices = tuple(check_value(name, value) for value in spec["choices"])
        if not choices or len(set(map(repr, choices))) != len(choices):
            raise SpaceError(f"{name}: choices must be distinct and not empty, got {spec['choices']}")
        return Param(name, "categorical", choices=choices, when=when)
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"{name}: needs choices, or low and high")
    low, high = check_value(name, spec["low"]), check_value(name, spec["high"])
    kind: Literal["float", "int"] = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if not isinstance(low, int | float) or isinstance(low, bool) or not low < high:
        raise SpaceError(f"{name}: low < high must be numbers, got {spec['low']!r}, {spec['high']!r}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise SpaceError(f"{name}: a log scale needs low > 0")
    return Param(name, kind, low, high, log, spec.get("step"), when=when)


@dataclass(frozen=True)
class SearchSpace:
    """Fixed values and searched params by dotted config name."""

    name: str
    fixed: dict[str, Any]
    params: tuple[Param, ...]

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's configuration params: the fixed values and the active searched ones."""
        values = dict(self.fixed)
        for param in self.params:
            if param.active(values):
                values[param.name] = param.suggest(trial)
        return values

    def values(self, name: str, default: Any) -> tuple[Any, ...]:
        """Every value ``name`` can take in this space (``default`` when the space leaves it alone)."""
        if name in self.fixed:
            return (self.fixed[name],)
        found = [p for p in self.params if p.name == name]
        if not found:
            return (default,)
        # a conditional param keeps the preset's value when its condition does not hold
        return found[0].values() + ((default,) if found[0].when else ())

    def to_dict(self) -> dict[str, Any]:
        return {"fixed": dict(self.fixed), "params": {p.name: p.to_dict() for p in self.params}}

    def digest(self) -> str:
        """A short hash of the space's content (a study refuses to resume with another space)."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str = "inline") -> SearchSpace:
        unknown = sorted(set(data) - {"fixed", "params"})
        if unknown:
            raise SpaceError(f"space {name}: unknown top-level keys {unknown} (expected fixed, params)")
        fixed = {key: check_value(key, value) for key, value in (data.get("fixed") or {}).items()}
        known, params = set(fixed), []
        for key, spec in (data.get("params") or {}).items():
            if key in fixed:
                raise SpaceError(f"space {name}: {key} is both fixed and searched")
            params.append(_param(key, spec, known))
            known.add(key)
        if not params:
            raise SpaceError(f"space {name}: no params to search")
        return cls(name, fixed, tuple(params))


def load_space(name_or_path: str | Path = DEFAULT_SPACE) -> SearchSpace:
    """A space by name (``pipelines/tune/spaces/<name>.yaml``) or path (YAML or JSON)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SPACES_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        shipped = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
        raise SpaceError(f"no search space {name_or_path!r} (a file, or one of {shipped})")
    try:
        data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise SpaceError(f"search space {path} does not parse: {exc}") from None
    if not isinstance(data, Mapping):
        raise SpaceError(f"search space {path}: expected a mapping with fixed and params")
    return SearchSpace.from_dict(data, path.stem if path.parent == SPACES_DIR else str(path))
