"""The project's training defaults: a preset per variant and reward (:func:`pipelines.train.default_configs`)
plus, per variant, the configuration a hyperparameter study chose, with its provenance.

A configuration is named by **dotted config fields**: ``agent.<field>`` (:class:`~models.config.AgentConfig`),
``env.<field>`` (:class:`~models.config.EnvConfig`), ``train.<field>`` (:class:`~models.config.TrainConfig`)
and ``features.<field>`` (:class:`FeatureConfig`: the feature set and the window). A field added to one of
these dataclasses is a valid name at once: the search space (pipelines/tune/spaces/) and this file name
fields, never code.

The defaults live in ``pipelines/defaults.json``, committed (a change of the defaults is a reviewed commit),
written by ``klinestream tune --write-defaults``::

    {"version": 1,
     "variants": {"linear": {"params": {"env.reward": "risk", "agent.learning_rate": 0.001, ...},
                             "provenance": {"study": "...", "trial": 17, "objective": 0.84, "date": "...", ...}}}}

A variant without an entry trains with the preset (the defaults before any study): the reward
:data:`~models.config.DEFAULT_REWARD` unless the entry sets ``env.reward``. The fee and the slippage are the
run's (its flags and settings), never a configuration's. Agent options (models/options.py, ``--option``) are
applied after the defaults. ``KLINESTREAM_DEFAULTS_FILE``
points every entry point (``klinestream train``, the DAGs, the demo, the walk-forward) at another file.
Every training records the provenance it trained with (MLflow params ``defaults.*``, the policy's metadata).
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from models.config import DEFAULT_FEE_RATE, DEFAULT_REWARD, AgentConfig, EnvConfig, TrainConfig
from models.errors import PermanentError
from models.feature_sets import DEFAULT_FEATURE_SET, FEATURE_SETS, FEATURES

DEFAULTS_FILE = Path(__file__).with_name("defaults.json")
DEFAULTS_VERSION = 1
#: Fields a configuration never sets: the variant is the study's, the rest belong to the run (its flags and
#: settings: seed, device, threads, fee and slippage).
RESERVED = frozenset(
    {"agent.variant", "train.seed", "train.device", "train.threads", "env.fee_rate", "env.slippage_bps"}
)


class ConfigNameError(PermanentError):
    """A dotted name that is no config field, or a value its field cannot take."""


@dataclass(frozen=True)
class FeatureConfig:
    """What the dataset is built from (pipelines.dataset.build_dataset)."""

    set: str = DEFAULT_FEATURE_SET
    """Named feature set (models/feature_sets.py)."""
    window: int = 10
    """Hours of feature rows in a state."""

    @property
    def history_hours(self) -> int:
        """Hours of klines before a state's hour that its features read: the set's longest lookback + the window."""
        return max(FEATURES[name].lookback for name in FEATURE_SETS[self.set]) + self.window


SECTIONS: dict[str, type] = {"agent": AgentConfig, "env": EnvConfig, "train": TrainConfig, "features": FeatureConfig}


@dataclass(frozen=True)
class Configuration:
    """Everything one training is configured by."""

    agent: AgentConfig
    env: EnvConfig
    train: TrainConfig
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def with_params(self, params: Mapping[str, Any]) -> Configuration:
        """A copy with the dotted ``params`` set (each checked against its field's type)."""
        changes: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        for name, value in params.items():
            section, key = split_name(name)
            changes[section][key] = check_value(name, value)
        return Configuration(**{s: replace(getattr(self, s), **c) for s, c in changes.items()})

    def with_options(self, options: Mapping[str, Any]) -> Configuration:
        """A copy with the agent ``options`` (models/options.py) set and the accounting's rules checked;
        ValueError says which option is wrong and why."""
        from models.options import apply_options

        agent, env, train = apply_options((self.agent, self.env, self.train), options)
        return replace(self, agent=agent, env=env, train=train)

    def params(self) -> dict[str, Any]:
        """Every field as a dotted name (what an MLflow run logs)."""
        return {f"{s}.{f.name}": getattr(getattr(self, s), f.name) for s in SECTIONS for f in fields(SECTIONS[s])}

    def shortened(self, total_env_steps: int) -> Configuration:
        """A quick run of ``total_env_steps``: learning starts after a quarter of them at the latest, and the
        batch shrinks to an eighth of them (at least 32)."""
        train = replace(self.train, total_env_steps=total_env_steps,
                        learning_starts=min(self.train.learning_starts, max(1, total_env_steps // 4)))  # fmt: skip
        agent = replace(self.agent, batch_size=min(self.agent.batch_size, max(32, total_env_steps // 8)))
        return replace(self, agent=agent, train=train)


def split_name(name: str) -> tuple[str, str]:
    """``("agent", "gamma")`` of ``"agent.gamma"``; an error names what is wrong (reserved names too)."""
    section, _, key = name.partition(".")
    if section not in SECTIONS or not key:
        raise ConfigNameError(f"{name!r} is not <section>.<field> with a section among {sorted(SECTIONS)}")
    known = {f.name for f in fields(SECTIONS[section])}
    if key not in known:
        raise ConfigNameError(f"{name!r}: {SECTIONS[section].__name__} has no field {key!r}; it has {sorted(known)}")
    if name in RESERVED:
        raise ConfigNameError(
            f"{name!r} is set by the run (variant, seed, device, threads, fee, slippage), not by a configuration"
        )
    return section, key


def _fits(kind: Any, value: Any) -> tuple[bool, Any]:
    """(whether ``value`` is of type ``kind``, the value converted: an int where a float is expected)."""
    origin = get_origin(kind)
    if origin is Literal:
        return value in get_args(kind), value
    if origin in (Union, types.UnionType):
        for option in get_args(kind):
            ok, converted = (value is None, None) if option is type(None) else _fits(option, value)
            if ok:
                return True, converted
        return False, value
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    return isinstance(value, kind) if isinstance(kind, type) else True, value


def check_value(name: str, value: Any) -> Any:
    """``value`` converted to the type of field ``name``; an error names the field, the value and the type."""
    section, key = split_name(name)
    kind = get_type_hints(SECTIONS[section])[key]
    ok, converted = _fits(kind, value)
    if ok and name == "features.set" and value not in FEATURE_SETS:
        ok = False
    if ok and name == "features.window" and value < 1:
        ok = False
    if not ok:
        expected = sorted(FEATURE_SETS) if name == "features.set" else kind
        raise ConfigNameError(f"{name}: {value!r} is not a valid value ({expected})")
    return converted


@dataclass(frozen=True)
class TrainingDefaults:
    """One variant's defaults: dotted params on top of the preset of their reward, and where they come from."""

    params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    """study, trial, objective, date, ... of the study that chose ``params``; empty for the preset."""

    @property
    def reward(self) -> str:
        return str(self.params.get("env.reward", DEFAULT_REWARD))

    @property
    def source(self) -> str:
        return "study" if self.provenance else "preset"

    def log_params(self) -> dict[str, Any]:
        """The provenance as MLflow params (``defaults.source``, ``defaults.study``, ``defaults.trial``, ...)."""
        scalars = {k: v for k, v in self.provenance.items() if isinstance(v, str | int | float | bool)}
        return {"defaults.source": self.source, **{f"defaults.{k}": v for k, v in scalars.items()}}

    def metadata(self) -> dict[str, Any]:
        """What a policy's metadata records (``defaults``): the source, the provenance and the params."""
        return {"source": self.source, "provenance": dict(self.provenance), "params": dict(self.params)}


@dataclass(frozen=True)
class ProjectDefaults:
    """The defaults file: :class:`TrainingDefaults` per variant."""

    variants: dict[str, TrainingDefaults] = field(default_factory=dict)
    path: Path | None = None

    def for_variant(self, variant: str, reward: str | None = None) -> TrainingDefaults:
        """The variant's defaults; the preset when there are none or when ``reward`` asks for another reward
        than the one they were chosen with (a configuration is used whole or not at all)."""
        chosen = self.variants.get(variant, TrainingDefaults())
        if reward is not None and reward != chosen.reward:
            return TrainingDefaults({"env.reward": reward})
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": DEFAULTS_VERSION,
            "variants": {v: {"params": d.params, "provenance": d.provenance} for v, d in sorted(self.variants.items())},
        }


def load_defaults(path: Path | str | None = None) -> ProjectDefaults:
    """The defaults in ``path`` (None = the committed :data:`DEFAULTS_FILE`); every name and value checked."""
    path = Path(path) if path is not None else DEFAULTS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PermanentError(f"defaults file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise PermanentError(f"defaults file {path} is not JSON: {exc}") from None
    if data.get("version") != DEFAULTS_VERSION:
        raise PermanentError(f"defaults file {path}: version {data.get('version')!r}, expected {DEFAULTS_VERSION}")
    variants = {}
    for variant, entry in data.get("variants", {}).items():
        params = {name: check_value(name, value) for name, value in entry.get("params", {}).items()}
        variants[variant] = TrainingDefaults(params, dict(entry.get("provenance", {})))
    return ProjectDefaults(variants, path)


def write_defaults(path: Path | str | None, variant: str, chosen: TrainingDefaults) -> ProjectDefaults:
    """Set ``variant``'s defaults in ``path`` (None = the committed file), keeping the other variants."""
    path = Path(path) if path is not None else DEFAULTS_FILE
    current = load_defaults(path) if path.exists() else ProjectDefaults()
    for name, value in chosen.params.items():
        check_value(name, value)
    updated = ProjectDefaults({**current.variants, variant: chosen}, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(updated.to_dict(), indent=2, sort_keys=True) + "\n")
    return updated


def configure(
    variant: str,
    params: Mapping[str, Any],
    seed: int = 0,
    device: str = "cpu",
    fee_rate: float = DEFAULT_FEE_RATE,
    slippage_bps: float = 0.0,
) -> Configuration:
    """The preset of ``variant`` (:func:`pipelines.train.default_configs`) for the reward ``params`` names
    (``env.reward``, else :data:`~models.config.DEFAULT_REWARD`), the run's fee and slippage, with the dotted
    ``params`` set and the accounting's rules checked: what a study's trial trains, and what the defaults give."""
    from models.accounting import check_rules
    from pipelines.train import default_configs  # the presets; imported here to keep this module light

    reward = str(params.get("env.reward", DEFAULT_REWARD))
    presets = default_configs(variant, seed, device, reward, fee_rate, slippage_bps)
    configuration = Configuration(*presets).with_params(params)
    try:
        check_rules(configuration.env)
    except ValueError as error:
        raise ConfigNameError(f"configuration {dict(params)}: {error}") from None
    return replace(configuration, train=replace(configuration.train, seed=seed, device=device))


def default_configuration(
    variant: str,
    seed: int = 0,
    device: str = "cpu",
    reward: str | None = None,
    defaults: ProjectDefaults | None = None,
    fee_rate: float = DEFAULT_FEE_RATE,
    slippage_bps: float = 0.0,
    options: Mapping[str, Any] | None = None,
) -> tuple[Configuration, TrainingDefaults]:
    """The project's default configuration of ``variant`` (the configuration a study chose, from
    ``defaults`` or the committed file; else the preset) with the run's fee and slippage and then the agent
    ``options`` on top, and the defaults it came from (their provenance). ``reward`` other than the chosen
    configuration's gives that reward's preset."""
    chosen = (defaults or load_defaults()).for_variant(variant, reward)
    configuration = configure(variant, chosen.params, seed, device, fee_rate, slippage_bps)
    return (configuration.with_options(options) if options else configuration), chosen
