"""Model sources and online loggers of the online trader that need no outside service.

- :class:`~models.ports.ModelSource`: ``current_version()`` (what the champion alias points to now) and
  ``load(version)`` (that version as a :class:`~models.policy.Policy`). The trader polls it between
  micro-batches and hot-swaps when the version changes; it never moves the alias. The MLflow registry
  implements it in ``adapters.mlflow.registry.MlflowModelSource``; :class:`DirectoryModelSource` serves
  saved policy folders (demos, paper runs without MLflow). :class:`PollingModelSource` asks another
  source from a background thread, so a micro-batch never waits on the registry's REST call.
- :class:`~models.ports.OnlineLogger`: receives the online (target-net) weights now and then;
  ``adapters.mlflow.tracking.MlflowOnlineLogger`` logs them as a run tagged ``online=true`` that names
  its parent registered version (never registering or aliasing it); :class:`NoOnlineLogging` drops them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from models.policy import Policy
from models.ports import ModelSource


class DirectoryModelSource:
    """Versions = saved policy folders; ``current`` names the one to trade (change it to swap)."""

    def __init__(self, folders: Mapping[str, Path | str], current: str) -> None:
        self.folders = {version: Path(path) for version, path in folders.items()}
        if current not in self.folders:
            raise ValueError(f"current version {current!r} is not one of {sorted(self.folders)}")
        self.current = current

    def current_version(self) -> str:
        return self.current

    def load(self, version: str) -> Policy:
        return Policy.load(self.folders[version])


class PollingModelSource:
    """``source.current_version()`` asked every ``interval`` seconds by a daemon thread; ``current_version()``
    answers with the latest result at once (or raises the latest error: the trader then keeps its model).

    The first call asks ``source`` directly. A promotion is seen within ``interval`` seconds, i.e. by one of
    the next micro-batches; loading a version still goes to ``source``."""

    def __init__(self, source: ModelSource, interval: float = 1.0) -> None:
        self.source, self.interval = source, interval
        self._latest: str | Exception | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _ask(self) -> None:
        try:
            latest: str | Exception = self.source.current_version()
        except Exception as exc:  # handed to the caller of current_version
            latest = exc
        with self._lock:
            self._latest = latest

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._ask()

    def current_version(self) -> str:
        if self._thread is None:
            self._ask()
            self._thread = threading.Thread(target=self._poll, name="model-source-poll", daemon=True)
            self._thread.start()
        with self._lock:
            latest = self._latest
        if isinstance(latest, Exception):
            raise latest
        assert latest is not None
        return latest

    def load(self, version: str) -> Policy:
        return self.source.load(version)

    def close(self) -> None:
        self._stop.set()


class NoOnlineLogging:
    def log_online(self, parent_version: str, policy: Policy, metrics: Mapping[str, float], step: int) -> None:
        return None
