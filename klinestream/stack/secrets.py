"""The local stack's service passwords: generated once into ``<home>/secrets.env`` (mode 0600).

``klinestream stack up`` (and a test session) calls :func:`ensure_secrets` before anything starts: every
password setting still unset (neither in the environment, ``.env`` nor the file) gets a random value
appended to the file, which :func:`models.settings.load_settings` reads from then on. A password already
set somewhere is never replaced, so a person who chose their own keeps it. Values are never logged.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import SecretStr

from models.credentials import PASSWORD_FIELDS
from models.settings import Settings, env_name

log = logging.getLogger(__name__)

PASSWORD_BYTES = 24  # 32 url-safe characters


def new_password() -> str:
    """A random password of :data:`PASSWORD_BYTES` bytes, url-safe base64 (letters, digits, - and _)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)


def dotenv_lines(values: Mapping[str, str]) -> str:
    return "".join(f"{name}={value}\n" for name, value in values.items())


def ensure_secrets(settings: Settings) -> Settings:
    """``settings`` with every unset service password generated and appended to ``settings.secrets_path``."""
    missing = [field for field in PASSWORD_FIELDS if getattr(settings, field) is None]
    if not missing:
        return settings
    generated = {field: new_password() for field in missing}
    path = settings.secrets_path
    existing = path.read_text() if path.is_file() else ""
    header = (
        "" if existing else "# service passwords of the local stack, written by `klinestream stack up`; keep private\n"
    )
    body = existing + ("" if not existing or existing.endswith("\n") else "\n")
    write_private(path, header + body + dotenv_lines({env_name(f): v for f, v in generated.items()}))
    log.info("generated %d service passwords into %s", len(generated), path)
    return settings.model_copy(update={field: SecretStr(value) for field, value in generated.items()})


def secrets_subset(settings: Settings, fields: Iterable[str]) -> str:
    """The dotenv lines of ``fields`` (password settings) that are set: a service's own secrets file."""
    values = {}
    for field in fields:
        secret = getattr(settings, field)
        if secret is not None:
            values[env_name(field)] = secret.get_secret_value()
    return dotenv_lines(values)
