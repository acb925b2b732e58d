"""The polling model source: micro-batches never wait on the registry, and see a promotion within the interval."""

from __future__ import annotations

import time

import pytest

from adapters.mlflow.registry import RegistryError
from models.policy import Policy
from streaming.model_source import PollingModelSource
from tests.waiting import wait_for


class _Registry:
    def __init__(self) -> None:
        self.version: str | Exception = "1"
        self.calls = 0

    def current_version(self) -> str:
        self.calls += 1
        time.sleep(0.05)  # a REST call
        if isinstance(self.version, Exception):
            raise self.version
        return self.version

    def load(self, version: str) -> Policy:
        raise AssertionError("not used")


def test_answers_at_once_from_the_latest_poll_and_sees_a_promotion_within_the_interval() -> None:
    registry = _Registry()
    source = PollingModelSource(registry, interval=0.1)
    try:
        assert source.current_version() == "1" and registry.calls == 1  # the first answer is asked directly
        started = time.perf_counter()
        assert [source.current_version() for _ in range(100)] == ["1"] * 100
        assert time.perf_counter() - started < 0.05  # no call waited on the registry
        registry.version = "2"
        wait_for(lambda: source.current_version() == "2", 5, interval=0.01)
        registry.version = RegistryError("alias unset")
        wait_for(lambda: registry.calls >= 4 and isinstance(source._latest, Exception), 5, interval=0.01)
        with pytest.raises(RegistryError, match="alias unset"):
            source.current_version()
    finally:
        source.close()
