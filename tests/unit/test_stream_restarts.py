"""``run_stream_restarting``: a micro-batch failure the processor recorded restarts the query on a fresh
trader (as a supervisor would), so the batch can be set aside after its attempts; other failures go up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.errors import ServiceError
from models.settings import load_settings
from streaming import spark_job
from streaming.batch_state import BatchFailures
from streaming.spark_job import StreamOptions, checkpoint_root, run_stream_restarting


def test_a_failed_batch_restarts_the_stream_on_a_fresh_trader_until_it_is_set_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(home=tmp_path, max_batch_attempts=2)
    options = StreamOptions(name="restarts")
    failures_file = checkpoint_root(settings, options) / "aligner" / "failures.json"
    failures_file.parent.mkdir(parents=True)
    runs: list[Any] = []

    def fake_run(spark: Any, settings: Any, trader: Any, options: Any, **kwargs: Any) -> None:
        runs.append(trader)
        failures = BatchFailures(failures_file)
        if failures.attempts(7) < 2:  # the processor records the failure, then the query dies
            failures.record(7, ValueError("boom"))
            raise ServiceError("stream restarts stopped: ValueError: boom")
        failures.clear(7)  # the third attempt sets the batch aside and goes on

    monkeypatch.setattr(spark_job, "run_stream", fake_run)
    made: list[Any] = []
    closed: list[Any] = []

    def make_trader() -> Any:
        made.append(object())
        return made[-1]

    run_stream_restarting(None, settings, make_trader, options, close_trader=closed.append)  # type: ignore[arg-type]
    assert len(runs) == 3 and runs == made == closed and len(set(map(id, made))) == 3


def test_a_failure_that_is_not_a_recorded_batch_failure_is_raised_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(home=tmp_path)
    calls: list[int] = []

    def fake_run(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        raise ServiceError("stream stopped: kafka away")

    monkeypatch.setattr(spark_job, "run_stream", fake_run)
    with pytest.raises(ServiceError, match="kafka away"):
        run_stream_restarting(None, settings, lambda: None, StreamOptions(name="once"))  # type: ignore[arg-type,return-value]
    assert calls == [1]
