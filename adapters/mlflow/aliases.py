"""Moving the registry's aliases (never stages): ``challenger``, ``champion`` and ``previous``.

- Every new version becomes ``challenger`` (:func:`set_challenger`).
- :func:`promote` makes a version the ``champion``; the displaced champion becomes ``previous``;
  :func:`rollback` puts it back.
- Each move is recorded as ``gate.*`` tags on the versions (:func:`set_tags`), so the MLflow UI shows
  why a version is (not) the champion.

Who calls these decides when: the retrain DAG's gate (``pipelines/promotion.py``), ``klinestream
promote`` and the demo. A person can also set ``champion`` in the MLflow UI: the platform reads the
alias (:mod:`adapters.mlflow.registry`), never a copy.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient

from adapters.mlflow.registry import CHALLENGER, CHAMPION, PREVIOUS, RegistryError, alias_version

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
