"""MLflow's basic-auth accounts: logging a process in, and the admin path that creates the accounts.

A process acts as one MLflow account, chosen at its entry point with :func:`use_account`: MLflow's client
reads ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` from the environment at each request.
``klinestream stream`` is the stream account (READ: it loads the champion and can neither register a
version nor move an alias); the DAGs, ``promote``, ``demo`` and the benches are the writer.

The server (``mlflow server --app-name basic-auth``, klinestream/stack/services.py) runs with
``default_permission = READ``: every account reads, and changing a resource takes MANAGE or EDIT on it,
which its creator gets. :func:`provision_accounts` (run by ``klinestream stack up``) creates the stream
and writer accounts with the passwords of the settings, grants the stream READ on the registered model and
the writer MANAGE on the experiments and registered models that already exist (those created before
authentication was on have no owner).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import requests

from models.credentials import Credentials, MlflowAccount
from models.errors import ServiceError
from models.settings import Settings

log = logging.getLogger(__name__)

USERNAME_VARIABLE = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VARIABLE = "MLFLOW_TRACKING_PASSWORD"
TIMEOUT = 30


def use_account(settings: Settings, account: MlflowAccount) -> None:
    """Log this process's MLflow client in as ``account`` (nothing to do when MLflow has no passwords)."""
    credentials = settings.mlflow_credentials(account)
    if credentials is None:
        return
    os.environ[USERNAME_VARIABLE] = credentials.username
    os.environ[PASSWORD_VARIABLE] = credentials.secret()
    log.debug("mlflow account=%s", credentials.username)  # every command logs in: not worth a line each


class _Admin:
    """Calls of the basic-auth app's REST API as the admin."""

    def __init__(self, tracking_uri: str, admin: Credentials) -> None:
        self.base = tracking_uri.rstrip("/")
        self.session = requests.Session()
        self.session.auth = (admin.username, admin.secret())

    def call(self, method: str, path: str, expected: tuple[int, ...] = (200,), **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, f"{self.base}{path}", timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise ServiceError(f"MLflow at {self.base} unreachable: {exc}") from exc
        if response.status_code == 401:
            raise ServiceError(
                f"MLflow at {self.base} refuses its admin account: KLINESTREAM_MLFLOW_ADMIN_PASSWORD differs from "
                "the one its auth database was created with"
            )
        if response.status_code not in expected:
            raise ServiceError(f"MLflow {method} {path} failed: HTTP {response.status_code} {response.text[:200]}")
        return response

    def upsert_user(self, credentials: Credentials) -> None:
        body = {"username": credentials.username, "password": credentials.secret()}
        created = self.call("POST", "/api/2.0/mlflow/users/create", expected=(200, 400, 409), json=body)
        if created.status_code != 200:  # it exists: make its password the settings' one
            self.call("PATCH", "/api/2.0/mlflow/users/update-password", json=body)

    def grant(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        """Give ``username`` exactly ``permission`` on the resource (an existing grant is replaced: the API
        has no update of a user's permission, so it is revoked and granted again)."""
        target = {"username": username, "resource_type": resource_type, "resource_id": resource_id}
        path = "/api/3.0/mlflow/users/permissions"
        granted = self.call("POST", f"{path}/grant", expected=(200, 400), json={**target, "permission": permission})
        if granted.status_code == 400:
            if "RESOURCE_ALREADY_EXISTS" not in granted.text:
                raise ServiceError(f"MLflow grant {target} failed: HTTP 400 {granted.text[:200]}")
            self.call("POST", f"{path}/revoke", json=target)
            self.call("POST", f"{path}/grant", json={**target, "permission": permission})

    def existing(self, path: str, key: str, field: str) -> list[str]:
        """Every ``field`` of the ``key`` list a paginated search returns."""
        found: list[str] = []
        token: str | None = None
        while True:
            params = {"max_results": 1000, **({"page_token": token} if token else {})}
            body = self.call("GET", path, params=params).json()
            found += [str(item[field]) for item in body.get(key, [])]
            token = body.get("next_page_token")
            if not token:
                return found


def stream_permission(settings: Settings) -> str:
    """The stream account's permission on the registered model: READ, or EDIT when the live monitor may roll
    the champion back (``KLINESTREAM_MONITOR_AUTO_ROLLBACK``: moving the alias is then the stream's job)."""
    return "EDIT" if settings.monitor_auto_rollback else "READ"


def provision_accounts(settings: Settings) -> list[str]:
    """Create or update the stream and writer accounts and their grants; returns the accounts set."""
    admin = settings.mlflow_credentials(MlflowAccount.ADMIN)
    if admin is None:
        return []
    api = _Admin(settings.mlflow_tracking_uri, admin)
    stream = settings.mlflow_credentials(MlflowAccount.STREAM)
    writer = settings.mlflow_credentials(MlflowAccount.WRITER)
    assert stream is not None and writer is not None  # settings raise when one password of MLflow is missing
    for credentials in (stream, writer):
        api.upsert_user(credentials)
    api.grant(stream.username, "registered_model", settings.mlflow_model_name, stream_permission(settings))
    api.grant(writer.username, "registered_model", settings.mlflow_model_name, "MANAGE")
    for name in api.existing("/api/2.0/mlflow/registered-models/search", "registered_models", "name"):
        api.grant(writer.username, "registered_model", name, "MANAGE")
    for experiment_id in api.existing("/api/2.0/mlflow/experiments/search", "experiments", "experiment_id"):
        api.grant(writer.username, "experiment", experiment_id, "MANAGE")
    log.info("mlflow accounts set: %s (%s on %s), %s", stream.username, stream_permission(settings),
             settings.mlflow_model_name, writer.username)  # fmt: skip
    return [stream.username, writer.username]
