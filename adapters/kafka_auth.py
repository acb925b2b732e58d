"""Kafka authentication and authorisation: how each principal logs in (SASL/SCRAM-SHA-512), and the
ACLs and SCRAM credentials the admin path sets (``klinestream stack up``, :func:`adapters.kafka.ensure_topics`).

Who may do what (models/credentials.py names the principals; docs/security.md has the table):

- ingestor: WRITE, READ and DESCRIBE on ``klines.1h`` (it reads the topic back for its resume point);
- stream: READ and DESCRIBE on ``klines.1h``, WRITE and DESCRIBE on ``klines.dlq``, READ on the consumer
  groups of Spark's Kafka source (prefix :data:`SPARK_GROUP_PREFIX`);
- writer (tests, the demo's seed, the bench): WRITE, READ and DESCRIBE on ``klines.1h``, READ and DESCRIBE
  on ``klines.dlq``; READ, WRITE and DESCRIBE on any other topic the admin path creates for it;
- writer: READ on every consumer group;
- admin: super user (``super.users``, PLAIN login), the only one that creates or deletes topics.

With no Kafka password in the settings every function here is a no-op and clients connect in PLAINTEXT.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    UserScramCredentialUpsertion,
)

from models.credentials import KafkaPrincipal, username
from models.errors import ServiceError
from models.settings import Settings

log = logging.getLogger(__name__)

SECURITY_PROTOCOL = "SASL_PLAINTEXT"
SCRAM_MECHANISM = "SCRAM-SHA-512"
ADMIN_MECHANISM = "PLAIN"
"""The admin logs in with PLAIN (the broker's JAAS holds it), so it needs no SCRAM user: ``stack up`` creates
the SCRAM users of a fresh broker as the admin."""
SPARK_GROUP_PREFIX = "spark-kafka-source-"
"""Spark's Kafka source names its consumer groups ``spark-kafka-source-<query>-...``."""

_READ = (ACLOperation.READ, ACLOperation.DESCRIBE)
_WRITE = (ACLOperation.WRITE, ACLOperation.DESCRIBE)
_READ_WRITE = (ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE)


def client_security(settings: Settings, principal: KafkaPrincipal) -> dict[str, Any]:
    """kafka-python keyword arguments that log ``principal`` in; empty when Kafka has no passwords."""
    credentials = settings.kafka_credentials(principal)
    if credentials is None:
        return {}
    return {
        "security_protocol": SECURITY_PROTOCOL,
        "sasl_mechanism": ADMIN_MECHANISM if principal is KafkaPrincipal.ADMIN else SCRAM_MECHANISM,
        "sasl_plain_username": credentials.username,
        "sasl_plain_password": credentials.secret(),
    }


def spark_security_options(settings: Settings, principal: KafkaPrincipal) -> dict[str, str]:
    """The ``kafka.*`` options of Spark's Kafka source that log ``principal`` in (empty without passwords).

    The JAAS line holds the password: streaming/spark_session.py adds ``jaas`` to Spark's redaction pattern,
    and the Kafka client itself prints ``sasl.jaas.config`` as ``[hidden]``."""
    credentials = settings.kafka_credentials(principal)
    if credentials is None:
        return {}
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{credentials.username}" password="{credentials.secret()}";'
    )
    return {
        "kafka.security.protocol": SECURITY_PROTOCOL,
        "kafka.sasl.mechanism": SCRAM_MECHANISM,
        "kafka.sasl.jaas.config": jaas,
    }


def _acl(principal: KafkaPrincipal, operation: ACLOperation, pattern: ResourcePattern) -> ACL:
    return ACL(f"User:{username(principal)}", "*", operation, ACLPermissionType.ALLOW, pattern)


def topic_acls(settings: Settings, topic: str) -> list[ACL]:
    """The ACLs that make ``topic`` usable by the principals of its role (klines, DLQ, or another topic)."""
    pattern = ResourcePattern(ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL)
    grants: dict[KafkaPrincipal, tuple[ACLOperation, ...]]
    if topic == settings.kafka_topic_klines:
        grants = {
            KafkaPrincipal.INGESTOR: _READ_WRITE,
            KafkaPrincipal.STREAM: _READ,
            KafkaPrincipal.WRITER: _READ_WRITE,
        }
    elif topic == settings.kafka_topic_dlq:
        grants = {KafkaPrincipal.STREAM: _WRITE, KafkaPrincipal.WRITER: _READ}
    else:
        grants = {KafkaPrincipal.WRITER: _READ_WRITE}
    return [_acl(principal, op, pattern) for principal, ops in grants.items() for op in ops]


def group_acls() -> list[ACL]:
    """READ on Spark's source consumer groups for the stream (its executors' consumers carry a group id),
    and on every group for the writer (tests and benches read with consumer groups of their own)."""
    spark = ResourcePattern(ResourceType.GROUP, SPARK_GROUP_PREFIX, ACLResourcePatternType.PREFIXED)
    every = ResourcePattern(ResourceType.GROUP, "*", ACLResourcePatternType.LITERAL)
    return [
        _acl(KafkaPrincipal.STREAM, ACLOperation.READ, spark),
        _acl(KafkaPrincipal.WRITER, ACLOperation.READ, every),
    ]


def grant_topics(admin: KafkaAdminClient, settings: Settings, topics: Iterable[str]) -> None:
    """Create the ACLs of ``topics`` (and of Spark's groups); Kafka ignores ACLs that already exist."""
    if settings.kafka_credentials(KafkaPrincipal.ADMIN) is None:
        return
    acls = [acl for topic in topics for acl in topic_acls(settings, topic)] + group_acls()
    result = admin.create_acls(acls)
    if result["failed"]:
        raise ServiceError(f"creating Kafka ACLs failed: {result['failed']}")
    log.info("kafka ACLs set topics=%s", list(topics))


def revoke_topics(admin: KafkaAdminClient, settings: Settings, topics: Iterable[str]) -> None:
    """Delete every literal ACL on ``topics`` (after the topics themselves are deleted)."""
    if settings.kafka_credentials(KafkaPrincipal.ADMIN) is None:
        return
    filters = [
        ACLFilter(
            None,
            None,
            ACLOperation.ANY,
            ACLPermissionType.ANY,
            ResourcePatternFilter(ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL),
        )
        for topic in topics
    ]
    if filters:
        admin.delete_acls(filters)


def upsert_scram_users(admin: KafkaAdminClient, settings: Settings) -> list[str]:
    """Set the SCRAM-SHA-512 credential of every principal that has a password (idempotent: the password
    of the settings wins, so a changed secrets file takes effect at the next ``stack up``)."""
    upserts = []
    for principal in KafkaPrincipal:
        credentials = settings.kafka_credentials(principal)
        if credentials is not None:
            upserts.append(UserScramCredentialUpsertion(credentials.username, SCRAM_MECHANISM, credentials.secret()))
    if not upserts:
        return []
    errors = {user: error for user, error in admin.alter_user_scram_credentials(upserts).items() if error}
    if errors:
        raise ServiceError(f"setting Kafka SCRAM credentials failed: {errors}")
    return [upsert.user for upsert in upserts]
