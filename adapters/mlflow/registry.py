"""Reading the MLflow model registry: which version an alias points to, and loading that version.

The live stream polls :func:`alias_version` between micro-batches (through :class:`MlflowModelSource`)
and, when the number changes, loads that version to hot-swap; the gate and the CLI read the same
functions. The platform always reads the alias from the registry, never a local copy, so setting
``champion`` in the MLflow UI has the same effect as the retrain DAG's gate or ``klinestream promote``.
Nothing here moves an alias (that is :mod:`adapters.mlflow.aliases`).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException

from adapters.mlflow.pyfunc import POLICY_ARTIFACT
from models.errors import PermanentError, TemporaryError
from models.policy import Policy

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)


class RegistryError(PermanentError):
    """The registry has no such model, version or alias (set the alias, or run a retrain first)."""


@dataclass(frozen=True)
class LoadedPolicy:
    """A registered model version, loaded."""

    name: str
    version: int
    alias: str | None
    policy: Policy
    run_id: str | None
    variant: str


def registry_client(tracking_uri: str) -> MlflowClient:
    """A client on the tracking server (which also serves the registry)."""
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def translate_error(exc: MlflowException, what: str) -> Exception:
    """The platform's error for an MLflow failure: RegistryError (no such thing) or TemporaryError."""
    code = getattr(exc, "error_code", "")
    if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
        return RegistryError(f"{what}: {exc.message}")
    return TemporaryError(f"{what}: MLflow registry unavailable or failing ({exc.message}); retry")


def alias_version(tracking_uri: str, name: str, alias: str = CHAMPION) -> int | None:
    """The version number ``alias`` points to now, or ``None`` when the alias is not set.

    One small REST call: cheap enough to poll between micro-batches.
    """
    client = registry_client(tracking_uri)
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except RestException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise translate_error(exc, f"reading alias {alias!r} of {name!r}") from exc
    except MlflowException as exc:
        if _missing_model(client, name):  # MLflow's auth app answers 403 for the alias of a missing model
            return None
        raise translate_error(exc, f"reading alias {alias!r} of {name!r}") from exc
    except OSError as exc:  # connection refused, DNS, ...
        raise TemporaryError(f"MLflow at {tracking_uri} unreachable: {exc}") from exc


def _missing_model(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except RestException as exc:
        return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
    except (MlflowException, OSError):
        return False
    return False


def load_version(
    tracking_uri: str, name: str, version: int, device: str = "cpu", alias: str | None = None
) -> LoadedPolicy:
    """Download the ``policy`` artifact of version ``version`` and rebuild the :class:`Policy`."""
    client = registry_client(tracking_uri)
    try:
        model_version = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise translate_error(exc, f"model {name!r} version {version}") from exc
    with tempfile.TemporaryDirectory(prefix="klinestream-model-") as tmp:
        try:
            policy_uri = _policy_uri(client, model_version, tracking_uri, tmp)
            policy_dir = Path(download_artifacts(artifact_uri=policy_uri, dst_path=tmp, tracking_uri=tracking_uri))
        except MlflowException as exc:
            raise translate_error(
                exc, f"downloading the {POLICY_ARTIFACT} artifact of {name!r} version {version}"
            ) from exc
        if not (policy_dir / "policy.json").is_file():
            raise RegistryError(
                f"{name!r} version {version} has no {POLICY_ARTIFACT} artifact: not a Klinestream model"
            )
        policy = Policy.load(policy_dir, device=device)
    variant = model_version.tags.get("variant", policy.variant)
    log.info("loaded model=%s version=%s alias=%s variant=%s", name, version, alias, variant)
    return LoadedPolicy(name, int(version), alias, policy, model_version.run_id, variant)


def _model_uri(client: MlflowClient, model_version: ModelVersion) -> str:
    """The artifact URI of the version's model folder."""
    source = str(model_version.source)
    if source.startswith("models:/m-"):  # an MLflow 3 logged model
        return str(client.get_logged_model(source.removeprefix("models:/")).artifact_location).rstrip("/")
    return source.rstrip("/")


def _policy_uri(client: MlflowClient, model_version: ModelVersion, tracking_uri: str, tmp: str) -> str:
    """Where the version's ``policy`` artifact lives, read from its MLmodel file (so only that folder is
    downloaded, not the whole model)."""
    model_uri = _model_uri(client, model_version)
    mlmodel = Path(download_artifacts(artifact_uri=f"{model_uri}/MLmodel", dst_path=tmp, tracking_uri=tracking_uri))
    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
    entry = flavor.get("artifacts", {}).get(POLICY_ARTIFACT)
    if not entry:
        raise RegistryError(
            f"{model_version.name!r} version {model_version.version} has no {POLICY_ARTIFACT!r} artifact: "
            "not a Klinestream model"
        )
    return f"{model_uri}/{entry['path']}"


def load_alias(tracking_uri: str, name: str, alias: str = CHAMPION, device: str = "cpu") -> LoadedPolicy:
    """Resolve ``alias`` to a version and load exactly that version (not "whatever the alias is later")."""
    version = alias_version(tracking_uri, name, alias)
    if version is None:
        raise RegistryError(
            f"model {name!r} has no {alias!r} alias: run the dqn_retrain DAG or `klinestream promote --version N`"
        )
    return load_version(tracking_uri, name, version, device=device, alias=alias)


def load_champion(tracking_uri: str, name: str, device: str = "cpu") -> LoadedPolicy:
    """The current champion: ``(version, policy)`` for the live stream."""
    return load_alias(tracking_uri, name, CHAMPION, device=device)


class MlflowModelSource:
    """The registry as the online trader's model source (:class:`models.ports.ModelSource`).

    ``current_version()`` is the version ``alias`` points to now (one REST call, poll it between
    micro-batches); ``load(version)`` loads exactly that version. It never moves an alias.
    """

    def __init__(self, tracking_uri: str, name: str, alias: str = CHAMPION, device: str = "cpu") -> None:
        self.tracking_uri, self.name, self.alias, self.device = tracking_uri, name, alias, device

    def current_version(self) -> str:
        version = alias_version(self.tracking_uri, self.name, self.alias)
        if version is None:
            raise RegistryError(
                f"model {self.name!r} has no {self.alias!r} alias: run the dqn_retrain DAG or "
                "`klinestream promote --version N`"
            )
        return str(version)

    def load(self, version: str) -> Policy:
        return load_version(self.tracking_uri, self.name, int(version), self.device, self.alias).policy


def ping_tracking_server(tracking_uri: str, timeout: float = 2.0) -> None:
    """Raise unless the MLflow server at ``tracking_uri`` answers ``/health`` now (no retry: readiness)."""
    import requests

    try:
        response = requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout)
    except requests.RequestException as exc:
        raise TemporaryError(f"MLflow unreachable at {tracking_uri}: {type(exc).__name__}") from exc
    if not response.ok:
        raise TemporaryError(f"MLflow at {tracking_uri} answered {response.status_code}")
