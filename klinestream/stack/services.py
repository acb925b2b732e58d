"""The four local services of ``klinestream stack``, one small class each.

A service knows its ports (from the settings), how to prepare its folder ``<home>/stack/<name>/`` (configs,
storage), the command that runs it in the foreground, the environment it needs and how to ask it whether
it is healthy with its own client, and what the admin path sets on it once it answers (:meth:`Service.provision`:
users, roles, grants, topics). Starting, stopping and waiting live in :mod:`klinestream.stack.control`.

A service's environment holds no secret of the caller (the Binance key, the signing key, the service
passwords): each reads its own password from a config file of mode 0600 in its folder, and the DAG tasks
of Airflow read theirs from the secrets file of the home (``load_settings``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path

import requests

from klinestream.stack import configs
from klinestream.stack.jvm import require_jars
from klinestream.stack.process import host_port_from_bootstrap, host_port_from_url, port_open
from klinestream.stack.secrets import new_password, write_private
from models.credentials import Credentials, KafkaPrincipal, MlflowAccount
from models.errors import ServiceError
from models.settings import SECRET_FIELDS, Settings, env_name

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

#: Variables of the caller that must not leak into a service (a test session points AIRFLOW_HOME elsewhere).
_SCRUBBED_PREFIXES = ("AIRFLOW", "MLFLOW_", "_AIRFLOW")
#: Variables never handed to a service: the secret settings, and anything named like a credential.
_SECRET_NAMES = frozenset(env_name(field) for field in SECRET_FIELDS)
_SECRET_ENDINGS = ("SECRET", "PASSWORD", "PASSWD", "API_KEY", "ACCESS_KEY", "TOKEN", "SECRET_KEY", "SIGNING_KEY",
                   "CREDENTIALS")  # fmt: skip


def is_secret_variable(name: str) -> bool:
    """True for a variable a service must not inherit (``KLINESTREAM_BINANCE_API_KEY``, ``*_PASSWORD``...)."""
    upper = name.upper()
    return upper in _SECRET_NAMES or upper.endswith(_SECRET_ENDINGS)


class Service(ABC):
    """One local service: ports, folder, command, environment and health check."""

    name: str
    start_timeout: float = 120.0
    stop_timeout: float = 30.0
    #: sent to the service's main process first; its process group gets SIGTERM, then SIGKILL, if it lingers
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- where ----------------------------------------------------------------------------------
    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def extra_ports(self) -> tuple[int, ...]:
        """Other ports the service binds (checked for conflicts before it starts)."""
        return ()

    @property
    def root(self) -> Path:
        return self.settings.stack_dir / self.name

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.root / f"{self.name}.pid"

    # --- how ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the folders and configs the command needs (idempotent)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def command(self) -> list[str]: ...

    def env(self) -> dict[str, str]:
        """The caller's environment without Airflow/MLflow variables, with the venv's scripts on PATH."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES) and not is_secret_variable(k)
        }
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        # services run in their own folder: hand them the resolved (absolute) locations, so that DAG tasks
        # read the same lake as the CLI and never a relative "var" below the service's folder
        env["KLINESTREAM_HOME"] = str(self.settings.home)
        for name, path in (
            ("KLINESTREAM_DATA_DIR", self.settings.data_dir),
            ("KLINESTREAM_LAKE_DIR", self.settings.lake_dir),
            ("KLINESTREAM_DEFAULTS_FILE", self.settings.defaults_file),
        ):
            if path is not None:
                env[name] = str(path)
        return env

    @abstractmethod
    def healthy(self) -> bool:
        """Ask the service itself whether it serves requests; False (never an exception) when it does not."""

    def provision(self) -> list[str]:
        """The admin path, once the service answers: set its users, roles, grants (idempotent, at every
        ``up``); returns what it set, for the report."""
        return []

    def notes(self) -> str:
        """A hint shown by ``stack status`` (login, URL)."""
        return ""

    def admin(self, credentials: Credentials | None) -> Credentials:
        """The admin login of a locked service (``stack up`` generates it before preparing any service)."""
        if credentials is None:
            raise ServiceError(f"{self.name} has no admin password: `klinestream stack up` generates the secrets file")
        return credentials


class KafkaService(Service):
    """Single-node KRaft Kafka: combined broker and controller, replication factors 1."""

    name = "kafka"
    start_timeout = 90.0

    @property
    def host(self) -> str:
        return host_port_from_bootstrap(self.settings.kafka_bootstrap_servers)[0]

    @property
    def port(self) -> int:
        return host_port_from_bootstrap(self.settings.kafka_bootstrap_servers)[1]

    @property
    def extra_ports(self) -> tuple[int, ...]:
        return (self.controller_port,)

    @property
    def controller_port(self) -> int:
        return self.port + 1

    def prepare(self) -> None:
        super().prepare()
        conf = self.root / "conf"
        conf.mkdir(exist_ok=True)
        admin = self.admin(self.settings.kafka_credentials(KafkaPrincipal.ADMIN))
        props = configs.kafka_server_properties(self.host, self.port, self.controller_port, self.data_dir, admin)
        write_private(conf / "server.properties", props)
        (conf / "log4j2.properties").write_text(configs.LOG4J2_CONSOLE)
        if not (self.data_dir / "meta.properties").exists():
            self._format_storage()

    def _java(self, main: str, *args: str, heap: str = "512m") -> list[str]:
        classpath = os.pathsep.join(str(p) for p in require_jars(self.settings.jvm_dir, "kafka"))
        return [
            "java",
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'conf' / 'log4j2.properties'}",
            "-cp",
            classpath,
            main,
            *args,
        ]

    def _format_storage(self) -> None:
        cluster_id = kafka_cluster_id(self.data_dir)
        server = str(self.root / "conf" / "server.properties")
        cmd = self._java(
            "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", server, heap="256m"
        )
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise ServiceError(f"formatting Kafka storage in {self.data_dir} failed: {result.stderr.strip()[-300:]}")
        log.info("formatted kafka storage cluster_id=%s dir=%s", cluster_id, self.data_dir)

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.root / "conf" / "server.properties"))

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        from kafka.errors import KafkaError

        from adapters.kafka import admin_client

        try:
            admin = admin_client(self.settings, client_id="ks-health", request_timeout_ms=5000)
        except (KafkaError, OSError, ServiceError):
            return False
        try:
            brokers = admin.describe_cluster().get("brokers", [])
            return bool(brokers)
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def provision(self) -> list[str]:
        """The SCRAM users of the principals, then the live-path topics and their ACLs."""
        from adapters.kafka import admin_client, ensure_topics
        from adapters.kafka_auth import upsert_scram_users

        admin = admin_client(self.settings)
        try:
            users = upsert_scram_users(admin, self.settings)
        finally:
            admin.close()
        topics = ensure_topics(self.settings)
        return [f"SCRAM users {', '.join(users)}", f"topics created: {', '.join(topics) or 'none'} (ACLs set)"]


def kafka_cluster_id(data_dir: Path) -> str:
    """A KRaft cluster id (22 url-safe base64 characters) derived from the data folder, so it is reproducible."""
    raw = hashlib.md5(str(data_dir).encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class CassandraService(Service):
    """One Cassandra 5.0 node on Java 17: 1 GB heap, JMX off, JRE crypto provider."""

    name = "cassandra"
    start_timeout = 240.0

    @property
    def storage_port(self) -> int:
        """Inter-node port: 7000 beside the default 9042, shifted with the native port so two nodes can coexist."""
        return 7000 + self.port - 9042

    @property
    def host(self) -> str:
        return self.settings.cassandra_hosts[0]

    @property
    def port(self) -> int:
        return self.settings.cassandra_port

    @property
    def extra_ports(self) -> tuple[int, ...]:
        return (self.storage_port,)

    def prepare(self) -> None:
        super().prepare()
        conf = self.root / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "cassandra.yaml").write_text(configs.cassandra_yaml(self.host, self.port, self.storage_port))
        (conf / "logback.xml").write_text(configs.LOGBACK_CONSOLE)

    def command(self) -> list[str]:
        found = require_jars(self.settings.jvm_dir, "cassandra")
        jamm = [p for p in found if p.name.startswith("jamm-")]
        if not jamm:
            raise ServiceError("the jamm agent jar is missing from the Cassandra jars: run `klinestream stack install`")
        conf = self.root / "conf"
        return [
            "java",
            "-Xms1G",
            "-Xmx1G",
            "-Xss512k",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=300",
            f"-javaagent:{jamm[0]}",
            *configs.CASSANDRA_JVM17_OPTIONS,
            f"-Dcassandra.config=file://{conf / 'cassandra.yaml'}",
            f"-Dcassandra.storagedir={self.data_dir}",
            f"-Dcassandra.logdir={self.root}",
            f"-Dlogback.configurationFile={conf / 'logback.xml'}",
            "-Dcassandra-foreground=yes",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.ring_delay_ms=1000",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-cp",
            os.pathsep.join([str(conf), *(str(p) for p in found)]),
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        from cassandra import DriverException
        from cassandra.cluster import NoHostAvailable

        from adapters.cassandra.provision import admin_session

        try:
            cluster, session = admin_session(self.settings, timeout=5.0)
        except (NoHostAvailable, DriverException, OSError, ServiceError):
            return False
        try:
            row = session.execute("SELECT release_version FROM system.local", timeout=5).one()
            return row is not None
        except (NoHostAvailable, DriverException, OSError):
            return False
        finally:
            cluster.shutdown()

    def provision(self) -> list[str]:
        """The admin role (the default superuser locked), the process roles, the keyspace and its grants."""
        from adapters.cassandra.provision import provision_keyspace, provision_roles

        roles = provision_roles(self.settings)
        created = provision_keyspace(self.settings)
        return [
            f"roles {', '.join(roles)}",
            f"keyspace {self.settings.cassandra_keyspace}, created: {', '.join(created) or 'none'} (grants set)",
        ]


class MlflowService(Service):
    """MLflow tracking server: SQLite backend, local artifact store, one worker, job execution off."""

    name = "mlflow"
    start_timeout = 120.0

    @property
    def host(self) -> str:
        return host_port_from_url(self.settings.mlflow_tracking_uri)[0]

    @property
    def port(self) -> int:
        return host_port_from_url(self.settings.mlflow_tracking_uri)[1]

    def command(self) -> list[str]:
        return [
            str(VENV_BIN / "mlflow"),
            "server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.data_dir / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.data_dir / "artifacts"),
            "--workers",
            "1",
            "--app-name",
            "basic-auth",
        ]

    #: The one secret variable the server gets: the key of its CSRF tokens (the basic-auth app requires it).
    OWN_SECRETS = ("MLFLOW_FLASK_SERVER_SECRET_KEY",)

    @property
    def auth_config(self) -> Path:
        return self.root / "conf" / "basic_auth.ini"

    @property
    def flask_key_path(self) -> Path:
        return self.root / "conf" / "flask_secret_key"

    def prepare(self) -> None:
        super().prepare()
        admin = self.admin(self.settings.mlflow_credentials(MlflowAccount.ADMIN))
        write_private(self.auth_config, configs.mlflow_auth_ini(self.data_dir / "basic_auth.db", admin))
        if not self.flask_key_path.exists():  # kept across restarts: the tokens of open UI pages stay valid
            write_private(self.flask_key_path, new_password())

    def env(self) -> dict[str, str]:
        env = super().env()
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(self.auth_config)
        if self.flask_key_path.exists():
            env[self.OWN_SECRETS[0]] = self.flask_key_path.read_text().strip()
        return env

    def provision(self) -> list[str]:
        """The stream (read-only) and writer accounts and their grants."""
        from adapters.mlflow.accounts import provision_accounts

        return [f"accounts {', '.join(provision_accounts(self.settings))}"]

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.settings.mlflow_tracking_uri.rstrip('/')}/health", timeout=3).ok
        except requests.RequestException:
            return False

    def notes(self) -> str:
        return f"UI {self.settings.mlflow_tracking_uri}"


class AirflowService(Service):
    """``airflow standalone`` (API server, scheduler, DAG processor, triggerer) on SQLite."""

    name = "airflow"
    start_timeout = 300.0
    stop_signal = signal.SIGINT  # standalone's own shutdown path: it terminates its components and waits

    @property
    def host(self) -> str:
        return host_port_from_url(self.settings.airflow_api_url)[0]

    @property
    def port(self) -> int:
        return host_port_from_url(self.settings.airflow_api_url)[1]

    @property
    def airflow_home(self) -> Path:
        return self.data_dir

    @property
    def password_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    def command(self) -> list[str]:
        # standalone without the serve-logs servers, which would listen on every interface
        return [sys.executable, "-m", "klinestream.stack.airflow_standalone"]

    def provision(self) -> list[str]:
        """The generated admin password file readable by its owner alone."""
        if self.password_file.exists():
            self.password_file.chmod(0o600)
            return [f"{self.password_file.name} mode 0600"]
        return []

    def env(self) -> dict[str, str]:
        env = super().env()
        base = f"http://{self.host}:{self.port}"
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.password_file),
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                # log servers of workers and triggerer (8793/8794 beside 8080), shifted with the API port; the
                # launcher skips them in the scheduler and triggerer, and tasks run in-process (LocalExecutor)
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(8793 + self.port - 8080),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(8794 + self.port - 8080),
                "AIRFLOW__API__BASE_URL": base,
                # SQLite has one writer: the scheduler, the API server and a CLI (`airflow backfill create`)
                # wait up to 60 s for the lock instead of sqlite's 5 s ("database is locked" under load)
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.airflow_home / 'airflow.db'}?timeout=60",
            }
        )
        return env

    def healthy(self) -> bool:
        url = f"{self.settings.airflow_api_url.rstrip('/')}/api/v2/monitor/health"
        try:
            response = requests.get(url, timeout=3)
            body = response.json() if response.ok else {}
        except (requests.RequestException, ValueError):
            return False
        return all(body.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler"))

    def notes(self) -> str:
        return f"UI {self.settings.airflow_api_url} — user admin, password in {self.password_file}"


class LiveService(Service):
    """The supervisor of the live processes (klinestream/stack/supervisor.py): ``klinestream stack supervise``.

    Its port is the stream's ops endpoint; it is healthy when every supervised program with an ops endpoint
    answers ``/health``."""

    name = "live"
    start_timeout = 180.0
    stop_timeout = 90.0

    @property
    def host(self) -> str:
        return self.settings.metrics_host

    @property
    def port(self) -> int:
        return self.settings.stream_metrics_port

    def command(self) -> list[str]:
        return [str(VENV_BIN / "klinestream"), "stack", "supervise"]

    def env(self) -> dict[str, str]:
        """The services' environment plus the caller's Klinestream secrets: the live processes are the ones that
        use them (the ingestor's signing key, the dashboard's password, the bot's token, a live trader's keys)."""
        env = super().env()
        env.update({k: v for k, v in os.environ.items() if k.startswith("KLINESTREAM_") and is_secret_variable(k)})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return env

    def healthy(self) -> bool:
        from klinestream.stack.supervisor import live_programs, probe

        programs = live_programs(self.settings)
        return all(probe(p.health_url)[0] in ("ok", "-") for p in programs)

    def notes(self) -> str:
        return f"supervised programs: see the live table below; logs in {self.root}/<program>.log"


SERVICE_CLASSES: dict[str, type[Service]] = {
    cls.name: cls for cls in (KafkaService, CassandraService, MlflowService, AirflowService)
}
SERVICE_NAMES = tuple(SERVICE_CLASSES)


def build_services(settings: Settings, names: list[str] | tuple[str, ...] = ()) -> list[Service]:
    """The services named (all of them, in start order, when ``names`` is empty)."""
    unknown = [n for n in names if n not in SERVICE_CLASSES]
    if unknown:
        raise ServiceError(f"unknown service(s) {unknown}; choose from {list(SERVICE_NAMES)}")
    chosen = [n for n in SERVICE_NAMES if not names or n in names]
    return [SERVICE_CLASSES[n](settings) for n in chosen]
