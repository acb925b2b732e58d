"""Running a study: its storage, resuming it, trials in worker processes, and its best configuration.

A study lives in an Optuna storage: a journal file (default ``<home>/tune/studies.journal``; safe for
several processes on one machine) or a database URL (``sqlite:///…``, ``postgresql://…``). The study's
config and space are kept in its user attributes, so ``klinestream tune --study-name S --trials 40``
resumes S with its own settings and refuses options that would change its objective. ``--trials`` is the
number of finished trials (complete + pruned) the study should have; a run adds the missing ones.

Trials run in ``workers`` processes of one torch thread each (spawned; each builds the study's klines and
datasets once), on CUDA when the device says so, each asking the shared storage for its next trial (TPE
with the constant liar, so parallel trials do not pile onto one point). One process tunes a study at a
time (a lock file under ``<home>/tune/locks``); trials a killed run left RUNNING are marked FAIL when the
study resumes and their parameters are queued again.
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from models.errors import PermanentError
from pipelines.defaults import TrainingDefaults
from pipelines.tune.config import (
    EXPERIMENT,
    OBJECTIVE_FIELDS,
    TuneConfig,
    check_outside_test_months,
    reading_span,
    resolved,
    validation_folds,
)
from pipelines.tune.space import SearchSpace, load_space
from pipelines.walkforward.runner import slice_klines

if TYPE_CHECKING:  # the objective (torch) and the tracking (mlflow) load when trials run, not to parse options
    from pipelines.tune.objective import StudyData, TrialRecorder
    from pipelines.tune.tracking import StudyRun

log = logging.getLogger(__name__)

CONFIG_ATTR, SPACE_ATTR, SPACE_NAME_ATTR = "klinestream.config", "klinestream.space", "klinestream.space_name"
PARENT_RUN_ATTR = "klinestream.mlflow_parent_run_id"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
ProgressFn = Callable[[int, int, dict[str, Any]], None]


def default_storage(home: Path) -> str:
    return str(home / "tune" / "studies.journal")


def open_storage(spec: str) -> BaseStorage:
    """A database URL (``sqlite:///…``) or the path of a journal file (its folder created)."""
    if "://" in spec:
        return RDBStorage(spec)
    path = Path(spec).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def describe_storage(spec: str) -> str:
    """The storage without a password (what logs, MLflow and the defaults' provenance show)."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", spec) if "://" in spec else str(Path(spec).expanduser())


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED)


def load_existing(storage: str, name: str) -> optuna.Study:
    """The stored study ``name``; an error names the storage and the studies it holds."""
    backend = open_storage(storage)
    names = optuna.get_all_study_names(backend)
    if name not in names:
        raise PermanentError(f"no study {name!r} in {describe_storage(storage)} (it holds {sorted(names)})")
    return optuna.load_study(study_name=name, storage=backend)


def count_trials(storage: str, name: str) -> int:
    """Finished trials (complete + pruned) of study ``name``: what the deflated Sharpe counts."""
    return len(finished_trials(load_existing(storage, name)))


@dataclass(frozen=True)
class PreparedStudy:
    name: str
    storage: str
    study: optuna.Study
    config: TuneConfig
    space: SearchSpace
    created: bool


def reconcile(stored: dict[str, Any], requested: TuneConfig, given: frozenset[str]) -> TuneConfig:
    """The stored config with the options ``given`` now; refuses a change to the objective's fields."""
    before = TuneConfig.from_dict(stored)
    merged = replace(before, **{k: getattr(requested, k) for k in given})
    changed = [k for k in OBJECTIVE_FIELDS if getattr(merged, k) != getattr(before, k)]
    if changed:
        was = ", ".join(f"{k}={stored.get(k)!r}" for k in changed)
        raise PermanentError(
            f"the study was created with {was}: these define its objective; resume without them or start a new "
            "study (--study-name)"
        )
    return merged


def prepare_study(
    name: str, storage: str, requested: TuneConfig, given: frozenset[str], space: str | None
) -> PreparedStudy:
    """Create the study, or load it and reconcile the options; check the guard and the folds first."""
    backend = open_storage(storage)
    exists = name in optuna.get_all_study_names(backend)
    if exists:
        study = optuna.load_study(study_name=name, storage=backend)
        attrs = study.user_attrs
        config = reconcile(attrs[CONFIG_ATTR], requested, given)
        stored_space = SearchSpace.from_dict(attrs[SPACE_ATTR], attrs.get(SPACE_NAME_ATTR, "stored"))
        if space is not None and load_space(space).digest() != stored_space.digest():
            raise PermanentError(f"study {name!r} was created with another search space ({stored_space.name})")
        chosen_space = stored_space
    else:
        chosen_space = load_space(space or "default")
        config = resolved(requested, chosen_space)
    check_outside_test_months(config, chosen_space)
    validation_folds(config)  # the range holds the folds
    if not exists:
        study = optuna.create_study(study_name=name, storage=backend, direction="maximize")
        study.set_user_attr(CONFIG_ATTR, config.to_dict())
        study.set_user_attr(SPACE_ATTR, chosen_space.to_dict())
        study.set_user_attr(SPACE_NAME_ATTR, chosen_space.name)
    return PreparedStudy(name, storage, study, config, chosen_space, not exists)


@contextmanager
def study_lock(home: Path, name: str) -> Iterator[None]:
    """One process tunes a study at a time (on this machine)."""
    folder = home / "tune" / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PermanentError(f"study {name!r} is being tuned by another process; wait for it or stop it") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recover_stale_trials(prepared: PreparedStudy) -> list[int]:
    """Mark trials left RUNNING by a killed run as FAIL and queue their parameters again (call under the lock)."""
    storage = prepared.study._storage
    stale = prepared.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        prepared.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    if stale:
        log.warning("study=%s stale trials %s marked FAIL and queued again", prepared.name, [t.number for t in stale])
    return [t.number for t in stale]


@dataclass(frozen=True)
class TrialJob:
    """What a worker process needs to run trials of a study (picklable)."""

    study: str
    storage: str
    snapshot: str
    config: dict[str, Any]
    space: dict[str, Any]
    device: str
    run: StudyRun | None


_WORKER: dict[str, Any] = {}


def _init_worker(job: TrialJob) -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from pipelines.tune.objective import NoRecorder, StudyData

    config = TuneConfig.from_dict(job.config)
    space = SearchSpace.from_dict(job.space)
    data = StudyData(pd.read_parquet(job.snapshot), config, space, validation_folds(config), job.device)
    recorder: TrialRecorder = NoRecorder()
    if job.run is not None:
        from pipelines.tune.tracking import MlflowRecorder

        recorder = MlflowRecorder(job.run, job.study)
    _WORKER.update(job=job, data=data, storage=open_storage(job.storage), recorder=recorder)


def run_one_trial(job: TrialJob, ordinal: int) -> dict[str, Any]:
    """Ask the study for a trial and run it (in a worker process, or inline); its outcome as a dict."""
    if _WORKER.get("job") != job:
        _init_worker(job)
    from pipelines.tune.objective import run_trial

    data: StudyData = _WORKER["data"]
    config = data.config
    sampler = optuna.samplers.TPESampler(
        seed=config.sampler_seed + ordinal, n_startup_trials=config.startup_trials, constant_liar=True
    )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1) if config.prune else None
    study = optuna.load_study(study_name=job.study, storage=_WORKER["storage"], sampler=sampler, pruner=pruner)
    finished: list[FrozenTrial] = []
    started = time.perf_counter()
    study.optimize(
        lambda trial: run_trial(trial, data, _WORKER["recorder"]),
        n_trials=1,
        callbacks=[lambda _study, trial: finished.append(trial)],
    )
    trial = finished[0]
    value = trial.value
    if value is None and trial.intermediate_values:  # pruned: its last running objective
        value = trial.intermediate_values[max(trial.intermediate_values)]
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": value,
        "params": trial.params,
        "seconds": time.perf_counter() - started,
    }


@dataclass(frozen=True)
class StudyOutcome:
    name: str
    storage: str
    n_trials: int
    """Finished trials of the study (complete + pruned)."""
    ran: list[dict[str, Any]]
    """The trials this run added."""
    best: FrozenTrial | None
    parent_run_id: str | None
    stale: list[int]
    wall_seconds: float


def write_snapshot(prepared: PreparedStudy, klines: pd.DataFrame, work: Path) -> Path:
    """The klines the objective may read (the tuning range and its feature history) as one Parquet file."""
    span = reading_span(prepared.config, prepared.space)
    frame = slice_klines(klines, span.start_ms, span.end_ms)
    missing = [s for s in prepared.config.symbols if not (frame["symbol"] == s).any()]
    if missing:
        raise PermanentError(f"no klines of {missing} in the tuning range {prepared.config.tune_range}")
    work.mkdir(parents=True, exist_ok=True)
    path = work / "klines.parquet"
    frame.to_parquet(path, index=False)
    return path


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: float(t.value or float("-inf"))) if complete else None


def run_trials(
    prepared: PreparedStudy,
    klines: pd.DataFrame,
    target: int,
    home: Path,
    workers: int = 2,
    device: str = "cpu",
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
    progress: ProgressFn | None = None,
) -> StudyOutcome:
    """Run trials until the study has ``target`` finished ones, in ``workers`` processes (inline with one)."""
    from pipelines.tune.tracking import close_parent_run, open_parent_run

    started = time.perf_counter()
    study, name = prepared.study, prepared.name
    with study_lock(home, name):
        stale = recover_stale_trials(prepared)
        missing = max(0, target - len(finished_trials(study)))
        snapshot = write_snapshot(prepared, klines, home / "tune" / re.sub(r"[^A-Za-z0-9_.-]+", "_", name))
        run = None
        if tracking_uri:
            run = open_parent_run(tracking_uri, experiment, name, prepared.config.to_dict(), prepared.space.to_dict(),
                                  study.user_attrs.get(PARENT_RUN_ATTR))  # fmt: skip
            study.set_user_attr(PARENT_RUN_ATTR, run.parent_run_id)
        job = TrialJob(name, prepared.storage, str(snapshot), prepared.config.to_dict(), prepared.space.to_dict(),
                       device, run)  # fmt: skip
        first = len(study.trials)
        ran: list[dict[str, Any]] = []
        try:
            for outcome in _trials(job, first, missing, workers):
                ran.append(outcome)
                if progress:
                    progress(len(ran), missing, outcome)
        except BaseException:
            if run is not None:
                close_parent_run(run, len(finished_trials(study)), _best_pair(study), failed=True)
            raise
        best = best_trial(study)
        n_trials = len(finished_trials(study))
        if run is not None:
            close_parent_run(run, n_trials, _best_pair(study))
    log.info("study=%s trials=%d ran=%d best=%s", name, n_trials, len(ran), best.number if best else None)
    return StudyOutcome(name, describe_storage(prepared.storage), n_trials, ran, best,
                        run.parent_run_id if run else None, stale, time.perf_counter() - started)  # fmt: skip


def _best_pair(study: optuna.Study) -> tuple[int, float] | None:
    best = best_trial(study)
    return (best.number, float(best.value or 0.0)) if best else None


def _trials(job: TrialJob, first: int, count: int, workers: int) -> Iterator[dict[str, Any]]:
    """Outcomes of ``count`` trials as they finish (ordinals from ``first`` seed each trial's sampler)."""
    if count == 0:
        return
    if workers <= 1:
        for index in range(count):
            yield run_one_trial(job, first + index)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        min(workers, count), mp_context=context, initializer=_init_worker, initargs=(job,)
    ) as pool:
        futures = [pool.submit(run_one_trial, job, first + index) for index in range(count)]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def best_defaults(storage: str, name: str) -> TrainingDefaults:
    """The best complete trial's configuration and its provenance (what ``--write-defaults`` writes)."""
    from adapters.mlflow.tracking import git_commit

    study = load_existing(storage, name)
    best = best_trial(study)
    if best is None:
        raise PermanentError(f"study {name!r} has no complete trial to apply")
    config = TuneConfig.from_dict(study.user_attrs[CONFIG_ATTR])
    provenance = {
        "study": name,
        "trial": best.number,
        "objective": float(best.value or 0.0),
        "n_trials": len(finished_trials(study)),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "trial_completed": best.datetime_complete.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if best.datetime_complete
        else "",
        "storage": describe_storage(storage),
        "space": study.user_attrs.get(SPACE_NAME_ATTR, ""),
        "space_digest": SearchSpace.from_dict(study.user_attrs[SPACE_ATTR]).digest(),
        "tune_range": config.tune_range,
        "folds": config.folds,
        "train_months": config.train_months,
        "seeds": ",".join(map(str, config.seeds)),
        "steps": config.steps or 0,
        "aggregate": config.aggregate,
        "mlflow_parent_run_id": study.user_attrs.get(PARENT_RUN_ATTR, ""),
        "mlflow_trial_run_id": best.user_attrs.get("mlflow_run_id", ""),
        "git_commit": git_commit(),
    }
    return TrainingDefaults(dict(best.user_attrs["config"]), provenance)


def summarize(storage: str, name: str, importance_min_trials: int = 4) -> dict[str, Any]:
    """The study at a glance: trial counts by state, the best trial (params, objective, fold scores) and,
    when at least ``importance_min_trials`` trials completed, Optuna's parameter importance (fANOVA)."""
    study = load_existing(storage, name)
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    best = best_trial(study)
    summary: dict[str, Any] = {
        "study": name,
        "storage": describe_storage(storage),
        "config": study.user_attrs.get(CONFIG_ATTR, {}),
        "space": study.user_attrs.get(SPACE_NAME_ATTR, ""),
        "trials": {state: states.count(state) for state in sorted(set(states))},
        "n_trials": len(finished_trials(study)),
        "best": None,
        "importance": {},
    }
    if best is not None:
        folds = [best.user_attrs[k] for k in sorted(best.user_attrs) if re.fullmatch(r"fold\d+", k)]
        summary["best"] = {"trial": best.number, "objective": best.value, "params": best.user_attrs.get("config", {}),
                           "folds": folds}  # fmt: skip
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if len(complete) >= importance_min_trials:
        try:
            importance = optuna.importance.get_param_importances(study)
            summary["importance"] = {k: round(float(v), 4) for k, v in importance.items()}
        except (ValueError, RuntimeError) as exc:  # e.g. every trial sampled the same values
            log.warning("study=%s parameter importance unavailable: %s", name, exc)
    return summary
