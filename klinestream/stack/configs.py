"""Configuration files the local services are started with (written into ``<home>/stack/<name>/conf``).

Those that hold a password (Kafka's JAAS lines, MLflow's auth config) are written with mode 0600.
"""

from __future__ import annotations

from pathlib import Path

from models.credentials import Credentials

SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def _plain_jaas(admin: Credentials) -> str:
    """The PLAIN login of the broker's own connections (to itself and to the controller) and of the stack's
    bootstrap of the SCRAM users: the admin alone, as client and as the listener's only PLAIN user."""
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{admin.username}" password="{admin.secret()}" user_{admin.username}="{admin.secret()}";'
    )


def kafka_server_properties(host: str, port: int, controller_port: int, data_dir: Path, admin: Credentials) -> str:
    """KRaft combined broker + controller, one node, every replication factor 1, locked.

    Clients log in with SASL/SCRAM-SHA-512 (users and ACLs set by the admin path); the broker's own
    connections and the controller listener use PLAIN with the admin alone (SCRAM cannot secure a KRaft
    controller listener, and PLAIN lets ``stack up`` create the SCRAM users of a fresh broker). The
    StandardAuthorizer denies what no ACL allows; topics are never created on demand."""
    jaas = _plain_jaas(admin)
    return f"""# written by `klinestream stack up`; edits are overwritten; holds the admin password (mode 0600)
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={host}:{controller_port}
listeners=SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
sasl.mechanism.inter.broker.protocol=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={SCRAM_JAAS}
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config={jaas}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{admin.username}
allow.everyone.if.no.acl.found=false
log.dirs={data_dir}
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
log.retention.hours=168
"""


#: Log4j 2 configuration for Kafka: everything to stdout, which the stack appends to ``kafka.log``.
LOG4J2_CONSOLE = """status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
"""


def cassandra_yaml(host: str, port: int, storage_port: int) -> str:
    """A single-node cluster listening on ``host``; directories default under ``-Dcassandra.storagedir``.

    Logins are checked (PasswordAuthenticator) and every statement is authorised (CassandraAuthorizer): the
    admin path creates a role per process and locks the default ``cassandra`` superuser."""
    return f"""# written by `klinestream stack up`; edits are overwritten
cluster_name: klinestream
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{host}:{storage_port}"
listen_address: {host}
rpc_address: {host}
storage_port: {storage_port}
native_transport_port: {port}
start_native_transport: true
commitlog_sync: periodic
commitlog_sync_period: 10000ms
concurrent_compactors: 1
authenticator:
  class_name: org.apache.cassandra.auth.PasswordAuthenticator
authorizer:
  class_name: org.apache.cassandra.auth.CassandraAuthorizer
role_manager:
  class_name: org.apache.cassandra.auth.CassandraRoleManager
crypto_provider:
  - class_name: org.apache.cassandra.security.JREProvider
    parameters:
      - fail_on_missing_provider: "false"
"""


def mlflow_auth_ini(database: Path, admin: Credentials) -> str:
    """The basic-auth app's configuration (``MLFLOW_AUTH_CONFIG_PATH``): every account reads, changes need a
    grant or ownership; the admin account is created with this password when the auth database is new."""
    return f"""# written by `klinestream stack up`; edits are overwritten; holds the admin password (mode 0600)
[mlflow]
default_permission = READ
database_uri = sqlite:///{database}
admin_username = {admin.username}
admin_password = {admin.secret()}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
# one worker: a cached login is dropped at once when its password changes
auth_cache_ttl_seconds = 60
"""


#: Logback configuration for Cassandra: INFO to stdout, which the stack appends to ``cassandra.log``.
LOGBACK_CONSOLE = """<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""

#: The module flags of Cassandra's ``conf/jvm17-server.options`` (Java 17), plus its Netty settings.
CASSANDRA_JVM17_OPTIONS: tuple[str, ...] = (
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
)
