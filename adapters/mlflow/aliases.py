"""Moving the registry's aliases (never stages): ``challenger``, ``champion`` and ``previous``.

- Every new version becomes ``challenger`` (:func:`set_challenger`).
- :func:`promote` makes a version the ``champion``; the displaced champion becomes ``previous``;
  :func:`rollback` puts it back.
- Each move is recorded as ``gate.*`` tags on the versions (:func:`set_tags`), so the MLflow UI shows
  why a version is (not) the champion.
- :class:`MlflowChampionRegistry` is the live monitor's view of the champion (streaming/monitor.py): it rolls
  back with :func:`rollback`, the call ``klinestream promote --rollback`` makes, and adds ``monitor.*`` tags.

Who calls these decides when: the retrain DAG's gate (``pipelines/promotion.py``), ``klinestream
promote`` and the demo. A person can also set ``champion`` in the MLflow UI: the platform reads the
alias (:mod:`adapters.mlflow.registry`), never a copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from adapters.mlflow.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    RegistryError,
    alias_version,
    registry_client,
    translate_error,
)
from models.errors import TemporaryError

log = logging.getLogger(__name__)


def utc_timestamp() -> str:
    """Now, as the ``gate.*_at`` / ``*_since`` tags write it (``2024-01-31T12:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_tags(client: MlflowClient, name: str, version: int, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def set_challenger(client: MlflowClient, name: str, version: int) -> None:
    """Point ``challenger`` at a new version."""
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    set_tags(client, name, version, {"gate.challenger_since": utc_timestamp()})
    log.info("alias challenger model=%s version=%d", name, version)


def promote(client: MlflowClient, name: str, version: int, how: str, tracking_uri: str) -> int | None:
    """Make ``version`` the champion; the displaced champion becomes ``previous``. Returns the displaced one."""
    old = alias_version(tracking_uri, name, CHAMPION)
    if old == version:
        log.info("model=%s version=%d is already the champion", name, version)
        return None
    client.set_registered_model_alias(name, CHAMPION, str(version))
    set_tags(client, name, version, {"gate.champion_since": utc_timestamp(), "gate.promoted_by": how})
    if old is not None:
        client.set_registered_model_alias(name, PREVIOUS, str(old))
        set_tags(client, name, old, {"gate.displaced_by": version, "gate.displaced_at": utc_timestamp()})
    log.info("alias champion model=%s version=%d previous=%s how=%s", name, version, old, how)
    return old


def rollback(client: MlflowClient, name: str, tracking_uri: str) -> int:
    """Put the ``previous`` champion back; the rolled-back version keeps a tag. Returns the new champion."""
    previous = alias_version(tracking_uri, name, PREVIOUS)
    if previous is None:
        raise RegistryError(f"model {name!r} has no {PREVIOUS!r} alias: nothing to roll back to")
    current = alias_version(tracking_uri, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, str(previous))
    client.delete_registered_model_alias(name, PREVIOUS)
    set_tags(client, name, previous, {"gate.champion_since": utc_timestamp(), "gate.promoted_by": "rollback"})
    if current is not None:
        set_tags(client, name, current, {"gate.rolled_back": "true", "gate.rolled_back_at": utc_timestamp(),
                                         "gate.displaced_by": previous})  # fmt: skip
    log.info("rollback model=%s champion=%d (was %s)", name, previous, current)
    return previous


T = TypeVar("T")


class MlflowChampionRegistry:
    """The champion alias of a registered model as the live monitor needs it (:class:`models.ports.ChampionRegistry`).

    Errors are the platform's: :class:`~adapters.mlflow.registry.RegistryError` (nothing to roll back to, no such
    version) or :class:`~models.errors.TemporaryError` (the server is away: ask again later)."""

    def __init__(self, tracking_uri: str, name: str) -> None:
        self.tracking_uri, self.name = tracking_uri, name
        self.client = registry_client(tracking_uri)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except MlflowException as exc:
            raise translate_error(exc, what) from exc
        except OSError as exc:
            raise TemporaryError(f"{what}: MLflow at {self.tracking_uri} unreachable: {exc}") from exc

    def champion_version(self) -> str | None:
        version = alias_version(self.tracking_uri, self.name, CHAMPION)
        return None if version is None else str(version)

    def version_tags(self, version: str) -> Mapping[str, str]:
        found = self._call(f"model {self.name!r} version {version}", lambda: self.client.get_model_version(
            self.name, version))  # fmt: skip
        return dict(found.tags)

    def rollback(self, version: str, condition: str, tags: Mapping[str, str]) -> str:
        """Why on ``version``, then :func:`rollback`, then the outcome on both versions; returns the new champion."""
        number = int(version)
        self._call("tagging the trailing champion", lambda: set_tags(self.client, self.name, number, dict(tags)))
        restored = self._call("rolling back", lambda: rollback(self.client, self.name, self.tracking_uri))
        now = utc_timestamp()
        done = {"monitor.rolled_back_at": now, "monitor.rolled_back_condition": condition,
                "monitor.restored_version": restored}  # fmt: skip
        self._call("tagging the rolled-back version", lambda: set_tags(self.client, self.name, number, done))
        back = {"monitor.restored_at": now, "monitor.restored_after": version, "monitor.condition": condition}
        self._call("tagging the restored champion", lambda: set_tags(self.client, self.name, restored, back))
        log.warning("monitor rollback model=%s from version=%s to version=%d condition=%s", self.name, version,
                    restored, condition)  # fmt: skip
        return str(restored)
