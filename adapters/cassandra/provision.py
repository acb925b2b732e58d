"""The Cassandra admin path: replace the default superuser, create a login role per process, provision a
keyspace (schema and grants). Run by ``klinestream stack up`` and by the tests for their throwaway keyspaces.

Roles (models/credentials.py; docs/security.md has the table):

- ``klinestream_admin``: superuser, created with the default ``cassandra`` superuser the first time, which
  is then locked (no login, no superuser, a random password nobody keeps);
- ``klinestream_stream``: SELECT and MODIFY on the keyspace (decisions, orders, positions, checkpoints);
- ``klinestream_dashboard`` and ``klinestream_operator``: SELECT on the keyspace, MODIFY on its ``controls``
  table alone (the kill switch they toggle).

With no Cassandra password in the settings (a cluster without authentication) only the schema is created.
Passwords travel as bound values of simple statements (the driver quotes them) and are never logged.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cassandra import AuthenticationFailed
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable, Session
from cassandra.policies import DCAwareRoundRobinPolicy

from adapters.cassandra.session import connect_cluster, ensure_schema
from models.credentials import CassandraRole, Credentials, username
from models.errors import ServiceError
from models.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_SUPERUSER = "cassandra"
"""The role Cassandra creates, with password ``cassandra``, when it starts with no role at all."""
READERS = (CassandraRole.DASHBOARD, CassandraRole.OPERATOR)
"""Roles that read the keyspace and write only its ``controls`` table."""


def auth_failed(exc: Exception) -> bool:
    """True when the driver could not connect because the server refused the login."""
    return isinstance(exc, NoHostAvailable) and any(isinstance(e, AuthenticationFailed) for e in exc.errors.values())


def _connect_as(settings: Settings, user: str, password: str, timeout: float) -> tuple[Cluster, Session]:
    cluster = Cluster(
        list(settings.cassandra_hosts),
        port=settings.cassandra_port,
        protocol_version=5,
        connect_timeout=timeout,
        auth_provider=PlainTextAuthProvider(username=user, password=password),
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc="datacenter1"),
    )
    try:
        return cluster, cluster.connect()
    except Exception:
        cluster.shutdown()
        raise


@contextmanager
def _driver_quiet() -> Iterator[None]:
    """The driver logs a refused login as an ERROR with a traceback; on a fresh node that refusal is expected."""
    driver_log = logging.getLogger("cassandra.cluster")
    level = driver_log.level
    driver_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        driver_log.setLevel(level)


def admin_session(settings: Settings, timeout: float = 10.0) -> tuple[Cluster, Session]:
    """A superuser session: ``klinestream_admin``, or on a node never provisioned the default superuser
    (raises NoHostAvailable when neither logs in, e.g. while the node is still creating its default role)."""
    admin = _admin(settings)
    try:
        with _driver_quiet():
            return _connect_as(settings, admin.username, admin.secret(), timeout)
    except NoHostAvailable as exc:
        if not auth_failed(exc):
            raise
    return _connect_as(settings, DEFAULT_SUPERUSER, DEFAULT_SUPERUSER, timeout)


def _admin(settings: Settings) -> Credentials:
    admin = settings.cassandra_credentials(CassandraRole.ADMIN)
    if admin is None:
        raise ServiceError(
            "Cassandra has no admin password (KLINESTREAM_CASSANDRA_ADMIN_PASSWORD): nothing to provision"
        )
    return admin


def provision_roles(settings: Settings, timeout: float = 120.0) -> list[str]:
    """Create ``klinestream_admin`` (from the default superuser, which is then locked) and the login roles of
    the processes, with the passwords of the settings (idempotent); returns the roles set."""
    if settings.cassandra_credentials(CassandraRole.ADMIN) is None:
        return []
    admin = _admin(settings)
    cluster, session = _wait_for_superuser(settings, timeout)
    try:
        if session.execute("SELECT role FROM system_auth.roles WHERE role = %s", (admin.username,)).one() is None:
            session.execute(
                f"CREATE ROLE {admin.username} WITH PASSWORD = %s AND SUPERUSER = true AND LOGIN = true",
                (admin.secret(),),
            )
            log.info("cassandra superuser %s created", admin.username)
    finally:
        cluster.shutdown()
    cluster, session = _login(settings, admin, timeout)
    try:
        _lock_default_superuser(session)
        roles = [role for role in CassandraRole if role is not CassandraRole.ADMIN]
        for role in roles:
            credentials = settings.cassandra_credentials(role)
            assert credentials is not None  # settings raise when one password of Cassandra is missing
            session.execute(f"CREATE ROLE IF NOT EXISTS {credentials.username} WITH LOGIN = true AND PASSWORD = %s",
                            (credentials.secret(),))  # fmt: skip
            session.execute(f"ALTER ROLE {credentials.username} WITH LOGIN = true AND PASSWORD = %s",
                            (credentials.secret(),))  # fmt: skip
        return [username(role) for role in CassandraRole]
    finally:
        cluster.shutdown()


def _wait_for_superuser(settings: Settings, timeout: float) -> tuple[Cluster, Session]:
    """A superuser session, waiting while a fresh node has not created its default role yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin_session(settings)
        except NoHostAvailable as exc:
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"Cassandra refuses klinestream_admin and the default superuser ({exc}): the admin password "
                    f"in {settings.secrets_path} is not the one this node was provisioned with"
                ) from None
            time.sleep(2.0)


def _login(settings: Settings, credentials: Credentials, timeout: float) -> tuple[Cluster, Session]:
    """Log in as a role just created (its credentials reach every auth cache within seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _connect_as(settings, credentials.username, credentials.secret(), 10.0)
        except NoHostAvailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _lock_default_superuser(session: Session) -> None:
    row = session.execute(
        "SELECT can_login, is_superuser FROM system_auth.roles WHERE role = %s", (DEFAULT_SUPERUSER,)
    ).one()
    if row is None or not (row.can_login or row.is_superuser):
        return
    session.execute(
        f"ALTER ROLE {DEFAULT_SUPERUSER} WITH PASSWORD = %s AND SUPERUSER = false AND LOGIN = false",
        (secrets.token_urlsafe(32),),
    )
    log.info("cassandra default superuser %s locked (no login, no superuser)", DEFAULT_SUPERUSER)


def grant_keyspace(session: Session, keyspace: str) -> None:
    """The roles' permissions on ``keyspace``: the stream reads and writes it, the readers read it and
    write its ``controls`` table."""
    stream = username(CassandraRole.STREAM)
    session.execute(f"GRANT SELECT ON KEYSPACE {keyspace} TO {stream}")
    session.execute(f"GRANT MODIFY ON KEYSPACE {keyspace} TO {stream}")
    for role in READERS:
        session.execute(f"GRANT SELECT ON KEYSPACE {keyspace} TO {username(role)}")
        session.execute(f"GRANT MODIFY ON TABLE {keyspace}.controls TO {username(role)}")


def provision_keyspace(settings: Settings, max_outage_seconds: float = 120.0) -> list[str]:
    """Create the schema of ``settings.cassandra_keyspace`` (what is missing) and grant the roles their
    permissions on it, as the admin; returns what it created."""
    cluster, session = connect_cluster(settings, CassandraRole.ADMIN, max_outage_seconds)
    try:
        created = ensure_schema(session, settings.cassandra_keyspace, max_outage_seconds)
        if settings.cassandra_credentials(CassandraRole.ADMIN) is not None:
            grant_keyspace(session, settings.cassandra_keyspace)
        return created
    finally:
        cluster.shutdown()


def drop_keyspace(settings: Settings, max_outage_seconds: float = 120.0) -> None:
    """Drop ``settings.cassandra_keyspace`` (Cassandra revokes the permissions on it), as the admin."""
    cluster, session = connect_cluster(settings, CassandraRole.ADMIN, max_outage_seconds)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", timeout=120)
    finally:
        cluster.shutdown()
