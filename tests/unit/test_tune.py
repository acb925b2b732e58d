"""The hyperparameter search (pipelines/tune/): tiny studies on synthetic klines (two trials of a few hundred
env steps) that record every trial, record pruned trials, resume from their storage, and never read a test
month. The MLflow side against the real server: tests/integration/test_tune.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from models.errors import PermanentError
from models.kline import HOUR_MS
from models.synthetic import random_walk_klines
from models.time_range import parse_range
from pipelines.defaults import Configuration, TrainingDefaults, default_configuration, load_defaults, write_defaults
from pipelines.tune.config import TestMonthsError, TuneConfig, reading_span, resolved, validation_folds
from pipelines.tune.objective import FoldScore, StudyData, run_trial
from pipelines.tune.space import SearchSpace, SpaceError, load_space
from pipelines.tune.study import best_defaults, count_trials, prepare_study, run_trials, summarize
from tests.tune_space import SYMBOLS
from tests.tune_space import TINY_SPACE as SPACE

CONFIG = TuneConfig(tune_range="2021-01-01:2021-04-01", folds=2, train_months=1, steps=192, symbols=SYMBOLS,
                    startup_trials=2)  # fmt: skip


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    start = parse_range("2020-12-01:2021-01-01").start_ms
    return random_walk_klines(SYMBOLS, start, 24 * 130, seed=7)


def space_file(tmp_path: Path) -> str:
    import json

    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SPACE))
    return str(path)


@dataclass
class RecordingLog:
    run_id: str | None
    folds: list[FoldScore] = field(default_factory=list)
    state: str = "running"
    value: float | None = None

    def fold(self, score: FoldScore, running: float) -> None:
        self.folds.append(score)

    def finish(self, state: str, value: float) -> None:
        self.state, self.value = state, value


@dataclass
class RecordingRecorder:
    """Keeps each trial's log in memory (a fake of the MLflow recorder, for unit tests only)."""

    trials: dict[int, tuple[dict[str, Any], Configuration, RecordingLog]] = field(default_factory=dict)

    @contextmanager
    def trial(self, number: int, params: dict[str, Any], configuration: Configuration) -> Iterator[RecordingLog]:
        record = RecordingLog(f"run-{number}")
        self.trials[number] = (params, configuration, record)
        yield record


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def study_data(klines: pd.DataFrame, config: TuneConfig = CONFIG) -> StudyData:
    space = SearchSpace.from_dict(SPACE, "tiny")
    config = resolved(config, space)
    return StudyData(klines, config, space, validation_folds(config))


def test_a_trial_trains_and_scores_every_fold_and_records_its_configuration(klines: pd.DataFrame) -> None:
    data, recorder = study_data(klines), RecordingRecorder()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda trial: run_trial(trial, data, recorder), n_trials=1)
    trial = study.trials[0]
    params, configuration, record = recorder.trials[0]
    assert trial.state == TrialState.COMPLETE and record.state == "complete"
    assert [s.month for s in record.folds] == ["2021-02", "2021-03"]
    assert record.value == pytest.approx(trial.value) == pytest.approx(sum(s.score for s in record.folds) / 2)
    assert configuration.agent.learning_rate == pytest.approx(params["agent.learning_rate"])
    assert configuration.env.reward == "log_return" and configuration.features.set == "reference"
    assert configuration.train.total_env_steps == CONFIG.steps and configuration.train.threads == 1
    assert trial.user_attrs["mlflow_run_id"] == "run-0" and trial.user_attrs["config"] == params
    assert set(trial.intermediate_values) == {0, 1}


def test_a_pruned_trial_stops_after_its_first_fold_and_is_recorded_as_pruned(klines: pd.DataFrame) -> None:
    data, recorder = study_data(klines), RecordingRecorder()
    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    study.optimize(lambda trial: run_trial(trial, data, recorder), n_trials=1)
    _, _, record = recorder.trials[0]
    assert study.trials[0].state == TrialState.PRUNED and record.state == "pruned"
    assert len(record.folds) == 1 and list(study.trials[0].intermediate_values) == [0]


def test_the_folds_validate_inside_the_range_after_an_embargo_that_covers_the_feature_history() -> None:
    space = SearchSpace.from_dict(SPACE)
    config = resolved(CONFIG, space)
    folds = validation_folds(config)
    tune = parse_range(CONFIG.tune_range)
    assert [f.test.end_ms for f in folds][-1] == tune.end_ms
    for fold in folds:
        assert fold.train.start_ms >= tune.start_ms
        assert fold.test.start_ms - fold.train.end_ms == config.embargo_hours * HOUR_MS
    with pytest.raises(PermanentError, match="shorter than the space's longest feature history"):
        resolved(TuneConfig(embargo_hours=2), space)


@pytest.mark.parametrize("tune_range", ["2021-06-01:2022-02-01", "2022-02-01:2022-06-01", "2023-01-20:2023-03-01"])
def test_a_range_that_reads_a_test_month_is_refused(tmp_path: Path, tune_range: str) -> None:
    config = TuneConfig(tune_range=tune_range, folds=1, train_months=1)
    with pytest.raises(TestMonthsError, match="never tune on test months"):
        prepare_study("s", str(tmp_path / "j.journal"), config, frozenset(), space_file(tmp_path))
    # the feature history before the range counts too
    span = reading_span(resolved(TuneConfig(), load_space()), load_space())
    assert span.end_ms <= parse_range("2022-01-01:2022-02-01").start_ms


def test_a_study_resumes_from_its_storage_and_refuses_another_objective(tmp_path: Path, klines: pd.DataFrame) -> None:
    storage, space = str(tmp_path / "studies.journal"), space_file(tmp_path)
    first = prepare_study("tiny", storage, CONFIG, frozenset(), space)
    outcome = run_trials(first, klines, 1, tmp_path, workers=1)
    assert first.created and outcome.n_trials == 1 and len(outcome.ran) == 1
    # a killed run leaves a RUNNING trial: the next run marks it FAIL and queues its parameters again
    stale = first.study.ask({"agent.learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
    again = prepare_study("tiny", storage, TuneConfig(), frozenset(), None)
    assert not again.created and again.config == first.config  # its own settings, not the defaults
    outcome = run_trials(again, klines, 2, tmp_path, workers=1)
    assert outcome.stale == [stale.number] and outcome.n_trials == 2 and len(outcome.ran) == 1
    assert count_trials(storage, "tiny") == 2
    states = [t.state for t in again.study.get_trials()]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 2
    assert run_trials(again, klines, 2, tmp_path, workers=1).ran == []  # target reached: nothing to do
    with pytest.raises(PermanentError, match="folds=2"):
        prepare_study("tiny", storage, TuneConfig(folds=3), frozenset({"folds"}), None)
    summary = summarize(storage, "tiny", importance_min_trials=2)
    assert summary["n_trials"] == 2 and summary["best"]["params"]["env.reward"] == "log_return"
    assert len(summary["best"]["folds"]) == 2 and set(summary["importance"]) <= set(SPACE["params"])


def test_the_best_trial_becomes_the_defaults_with_its_provenance(tmp_path: Path, klines: pd.DataFrame) -> None:
    storage = str(tmp_path / "studies.journal")
    prepared = prepare_study("chosen", storage, CONFIG, frozenset(), space_file(tmp_path))
    run_trials(prepared, klines, 2, tmp_path, workers=1)
    chosen = best_defaults(storage, "chosen")
    best = max(prepared.study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value or 0.0)
    assert chosen.provenance["study"] == "chosen" and chosen.provenance["trial"] == best.number
    assert chosen.provenance["tune_range"] == CONFIG.tune_range and chosen.provenance["date"].endswith("Z")
    path = tmp_path / "defaults.json"
    write_defaults(path, "linear", chosen)
    defaults = load_defaults(path)
    configuration, used = default_configuration("linear", defaults=defaults)
    assert configuration.agent.learning_rate == pytest.approx(best.params["agent.learning_rate"])
    assert configuration.env.reward == "log_return" and used.source == "study"
    assert used.log_params()["defaults.study"] == "chosen"
    # the other variant keeps its preset; another reward than the chosen one gives that reward's preset
    assert default_configuration("lstm", defaults=defaults)[1].source == "preset"
    assert default_configuration("linear", reward="risk", defaults=defaults)[1].source == "preset"


def test_the_retrain_dag_and_the_walkforward_train_what_the_defaults_chose_unless_a_reward_is_asked(
    tmp_path: Path,
) -> None:
    """No reward param means the defaults' configuration whole (its reward included), not the risk preset."""
    from pipelines.retrain import retrain_configuration
    from pipelines.retrain_config import RetrainConfig, config_from_params
    from pipelines.walkforward.runner import config_from_params as walkforward_params

    path = tmp_path / "defaults.json"
    write_defaults(path, "linear", TrainingDefaults({"env.reward": "log_return", "agent.gamma": 0.9}, {"study": "s"}))
    defaults = load_defaults(path)
    unset = config_from_params({"reward": None})
    assert unset.reward is None and walkforward_params({"reward": ""}).reward is None
    configuration, used = retrain_configuration("linear", 0, unset, "cpu", defaults=defaults)
    assert (configuration.env.reward, configuration.agent.gamma, used.source) == ("log_return", 0.9, "study")
    asked = retrain_configuration("linear", 0, RetrainConfig(reward="risk"), "cpu", defaults=defaults)
    assert (asked[0].env.reward, asked[1].source) == ("risk", "preset")


def test_a_space_with_an_unknown_field_or_a_bad_value_is_refused() -> None:
    with pytest.raises(PermanentError, match="AgentConfig has no field 'learning_rat'"):
        SearchSpace.from_dict({"params": {"agent.learning_rat": {"low": 0.1, "high": 0.2}}})
    with pytest.raises(PermanentError, match=r"features\.set"):
        SearchSpace.from_dict({"params": {"features.set": {"choices": ["reference", "nope"]}}})
    with pytest.raises(SpaceError, match="not fixed or searched before it"):
        SearchSpace.from_dict({"params": {"env.drawdown_penalty": {"low": 0.1, "high": 1.0,
                                                                   "when": {"env.reward": "risk"}}}})  # fmt: skip
    assert load_space().digest() == load_space("default").digest()


def test_the_committed_defaults_load_and_every_entry_point_reads_them() -> None:
    defaults = load_defaults()
    for variant in ("linear", "lstm"):
        configuration, used = default_configuration(variant, defaults=defaults)
        assert configuration.agent.variant == variant
        assert used.params == defaults.for_variant(variant).params


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"version": 1, "variants": {"linear": {"params": {"agent.gama": 0.9}}}}', "AgentConfig has no field 'gama'"),
        ('{"version": 1, "variants": {"linear": {"params": {"agent.gamma": "high"}}}}', "agent.gamma: 'high'"),
        ('{"version": 1, "variants": {"linear": {"params": {"train.seed": 3}}}}', "set by the run"),
        ('{"version": 2, "variants": {}}', "version 2, expected 1"),
        ("{not json", "is not JSON"),
    ],
)
def test_a_bad_defaults_file_fails_naming_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "defaults.json"
    path.write_text(content)
    with pytest.raises(PermanentError, match=message):
        load_defaults(path)
    with pytest.raises(PermanentError, match="does not exist"):
        load_defaults(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--range", "2021-06-01:2022-03-01"], "never tune on test months"),
        (["--space", "nope"], "no search space 'nope'"),
        (["--aggregate", "median"], "'median' is not one of 'mean', 'lower_quartile'"),
        (["--range", "2021-06-01"], "--range"),
    ],
)
def test_bad_tune_arguments_exit_non_zero_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "klinestream.cli", "tune", *args, "--data-dir", str(tmp_path), "--no-tracking"],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=300,
        env={**os.environ, "KLINESTREAM_HOME": str(tmp_path)},
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr


def test_walkforward_counts_a_studys_trials_and_names_a_missing_study(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    args = ["--studies", "nope", "--tune-storage", str(tmp_path / "j.journal"), "--data-dir", str(repo)]
    done = subprocess.run([sys.executable, "-m", "klinestream.cli", "walkforward", *args, "--no-tracking"],
                          capture_output=True, text=True, cwd=repo, timeout=300)  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1 and "no study 'nope'" in lines[0], done.stderr


def test_the_walk_forward_reads_the_history_of_the_feature_set_the_defaults_choose(tmp_path: Path) -> None:
    from pipelines.defaults import FeatureConfig
    from pipelines.walkforward.runner import WalkForwardConfig, history_hours

    path = tmp_path / "defaults.json"
    write_defaults(path, "linear", TrainingDefaults({"features.set": "indicators"}, {"study": "s"}))
    chosen = WalkForwardConfig(variants=("linear",), defaults_file=str(path))
    assert history_hours(chosen) >= FeatureConfig("indicators").history_hours > 500
    assert history_hours(WalkForwardConfig(variants=("linear",))) < FeatureConfig("indicators").history_hours


def test_options_are_checked_on_the_configuration_the_defaults_give_not_on_the_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defaults file that chose the reference reward (unit accounting): an option that needs portfolio
    accounting is refused at every entry point when no reward is asked, and accepted with --reward risk."""
    from pipelines.retrain_config import RetrainConfig
    from pipelines.train import checked_options
    from pipelines.walkforward.runner import WalkForwardConfig

    path = tmp_path / "defaults.json"
    write_defaults(path, "linear", TrainingDefaults({"env.reward": "reference"}, {"study": "s"}))
    needs_portfolio = {"turnover_penalty": 0.1}
    with pytest.raises(ValueError, match="turnover penalty needs"):
        checked_options(needs_portfolio, ["linear"], None, load_defaults(path))
    assert checked_options(needs_portfolio, ["linear"], "risk", load_defaults(path)) == needs_portfolio
    assert checked_options(needs_portfolio, ["linear"], None, load_defaults()) == needs_portfolio  # the preset
    with pytest.raises(PermanentError, match="turnover penalty needs"):
        WalkForwardConfig(variants=("linear",), options=needs_portfolio, defaults_file=str(path))
    monkeypatch.setenv("KLINESTREAM_DEFAULTS_FILE", str(path))
    with pytest.raises(PermanentError, match="turnover penalty needs"):
        RetrainConfig(variants=("linear",), options=needs_portfolio)
    assert RetrainConfig(variants=("linear",), options=needs_portfolio, reward="risk").options == needs_portfolio
