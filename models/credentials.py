"""Who may do what on the services: Kafka principals, Cassandra roles and MLflow accounts.

Every client of a locked service says which principal it acts as; its password comes from the settings
(``KLINESTREAM_<SERVICE>_<PRINCIPAL>_PASSWORD``, a secret string), never from code or a committed file.
``klinestream stack up`` generates the passwords of the local stack into ``<home>/secrets.env`` (mode 0600),
which :func:`models.settings.load_settings` reads after ``.env``; compose takes them from ``.env``.

The user names are fixed (``klinestream_<principal>``), the same in the local stack and in compose, so
that the ACLs, roles and grants the admin path creates (adapters/kafka.py, adapters/cassandra/provision.py,
adapters/mlflow/accounts.py) always name the principals the clients log in as. docs/security.md has the
table of who may do what.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from pydantic import SecretStr

USER_PREFIX = "klinestream_"
#: What a service password may hold: it is written into Kafka's JAAS configuration and CQL statements,
#: so quotes, backslashes and spaces are refused rather than escaped.
PASSWORD_PATTERN = re.compile(r"^[A-Za-z0-9._~+/=-]{16,256}$")


class KafkaPrincipal(StrEnum):
    """SCRAM-SHA-512 users of Kafka (``User:klinestream_<value>`` in the ACLs)."""

    ADMIN = "admin"
    """Super user: creates topics, sets ACLs and SCRAM credentials (``stack up``, the admin path)."""
    INGESTOR = "ingestor"
    """Writes ``klines.1h`` and reads it back for its resume point."""
    STREAM = "stream"
    """Reads ``klines.1h`` (as the Spark source), writes ``klines.dlq``."""
    WRITER = "writer"
    """Tests, the demo's seed and the bench: publish klines and read the live-path topics back."""


class CassandraRole(StrEnum):
    """Login roles of Cassandra's ``PasswordAuthenticator`` (role ``klinestream_<value>``)."""

    ADMIN = "admin"
    """Superuser that replaces the default ``cassandra`` role: schema, roles and grants."""
    STREAM = "stream"
    """The live trader: reads and writes the tables of its keyspace."""
    DASHBOARD = "dashboard"
    """Reads the keyspace; writes only the ``controls`` table (the kill switch it toggles)."""
    OPERATOR = "operator"
    """The CLI (kill switch, demo summary, reports): reads the keyspace, writes ``controls``."""


class MlflowAccount(StrEnum):
    """Accounts of MLflow's basic-auth app."""

    ADMIN = "admin"
    """The basic-auth app's admin: creates the other accounts and grants permissions."""
    STREAM = "stream"
    """Reads the registered model (loads the champion); cannot register versions or move aliases."""
    WRITER = "writer"
    """The DAGs and the CLI: experiments, runs, registered versions and aliases."""


@dataclass(frozen=True)
class Credentials:
    """A user name and its password (never shown by ``repr``)."""

    username: str
    password: SecretStr

    def secret(self) -> str:
        return self.password.get_secret_value()


def username(principal: KafkaPrincipal | CassandraRole | MlflowAccount) -> str:
    """``klinestream_<principal>``: the user (Kafka, MLflow) or role (Cassandra) name of ``principal``."""
    return f"{USER_PREFIX}{principal.value}"


def password_setting(service: str, principal: KafkaPrincipal | CassandraRole | MlflowAccount) -> str:
    """The settings field holding the password of ``principal`` on ``service`` (kafka, cassandra, mlflow)."""
    return f"{service}_{principal.value}_password"


SERVICE_PRINCIPALS: dict[str, tuple[KafkaPrincipal | CassandraRole | MlflowAccount, ...]] = {
    "kafka": tuple(KafkaPrincipal),
    "cassandra": tuple(CassandraRole),
    "mlflow": tuple(MlflowAccount),
}
"""Every principal of every locked service: the passwords ``stack up`` generates."""

PASSWORD_FIELDS: tuple[str, ...] = tuple(
    password_setting(service, principal)
    for service, principals in SERVICE_PRINCIPALS.items()
    for principal in principals
)
