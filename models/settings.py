"""Runtime settings: one object, read from ``KLINESTREAM_*`` environment variables and a ``.env`` file.

Built once at an entry point (CLI command, DAG task, Spark driver) with :func:`load_settings` and passed
down. Where things are does not depend on the current folder (:func:`locate`): the home is
``KLINESTREAM_HOME`` when it is set (environment or ``.env``), else ``<checkout>/var`` when the code runs
from a checkout (the folder holding the project's ``pyproject.toml``), else the user data folder
(``$XDG_DATA_HOME/klinestream``, by default ``~/.local/share/klinestream``). The ``.env`` file is read from
the checkout, or from that user data folder, and the relative paths it gives are taken from its own folder.

Invalid or missing values stop start-up with a :class:`~models.errors.SettingsError` that names
the environment variable. Binance keys are ``SecretStr``: their value never appears in ``repr``, ``str``,
logs or ``model_dump`` output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from models.config import Device
from models.credentials import (
    PASSWORD_FIELDS,
    PASSWORD_PATTERN,
    CassandraRole,
    Credentials,
    KafkaPrincipal,
    MlflowAccount,
    password_setting,
    username,
)
from models.errors import SettingsError
from models.signing import MIN_SECRET_BYTES, KlineSigner, signer_from_secret

ENV_PREFIX = "KLINESTREAM_"

DEFAULT_SYMBOLS = ("BNBUSDT", "BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT")

MIN_DASHBOARD_PASSWORD = 8

TradingMode = Literal["paper", "testnet", "live"]
#: Fields whose values are never echoed in an error message.
SECRET_FIELDS = frozenset(
    {
        "binance_api_key",
        "binance_api_secret",
        "kline_signing_key",
        "dashboard_password",
        "telegram_bot_token",
        *PASSWORD_FIELDS,
    }
)
#: The file of generated service passwords, below the home, unless KLINESTREAM_SECRETS_FILE names another.
SECRETS_FILE_NAME = "secrets.env"

PROJECT_NAME = "klinestream"
#: Settings that are folders: relative values in ``.env`` are taken from the ``.env`` file's own folder.
PATH_FIELDS = ("home", "data_dir", "lake_dir", "defaults_file", "secrets_file")


def checkout_root(module_file: Path | str = __file__) -> Path | None:
    """The checkout this code runs from (the folder of the project's ``pyproject.toml``), or None when the
    package is installed without its sources around it."""
    root = Path(module_file).resolve().parents[1]
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(rf'^name\s*=\s*"{PROJECT_NAME}"', text, re.M) else None


def user_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_DATA_HOME/klinestream`` (by default ``~/.local/share/klinestream``)."""
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / PROJECT_NAME


@dataclass(frozen=True)
class Location:
    """Where the settings come from: the default home and the ``.env`` file, decided once per process."""

    default_home: Path
    env_file: Path
    origin: Literal["checkout", "user data folder"]


def locate(environ: Mapping[str, str] = os.environ, root: Path | None = None, installed: bool = False) -> Location:
    """The checkout's ``var/`` and ``.env``; without a checkout (``installed``), the user data folder for both."""
    root = None if installed else (root or checkout_root())
    if root is not None:
        return Location(root / "var", root / ".env", "checkout")
    folder = user_data_dir(environ)
    return Location(folder, folder / ".env", "user data folder")


def _default_home() -> Path:
    return locate().default_home


class _DotEnvBesideItsFile(DotEnvSettingsSource):
    """``.env`` values, with relative folders (``KLINESTREAM_HOME=./var``) taken from the file's own folder,
    so a command finds the same home from any working folder."""

    def _read_env_file(self, file_path: Path) -> Mapping[str, str | None]:
        values = dict(super()._read_env_file(file_path))
        folder = Path(file_path).resolve().parent
        for field in PATH_FIELDS:
            key = env_name(field).lower() if not self.case_sensitive else env_name(field)
            value = values.get(key)
            if value and value.strip() and not Path(value).expanduser().is_absolute():
                values[key] = str(folder / value)
        return values


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


class Settings(BaseSettings):
    """Every knob of the platform. Each field is set by ``KLINESTREAM_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=locate().env_file,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    # --- local state -----------------------------------------------------------------------------
    home: Path = Field(
        default_factory=_default_home, description="Folder of local state: service data, logs, lake, jars."
    )
    data_dir: Path | None = Field(None, description="Folder of kline files used when Binance is unreachable.")
    lake_dir: Path | None = Field(None, description="Kline lake root; defaults to <home>/lake.")
    defaults_file: Path | None = Field(
        None,
        description="Training defaults (JSON, as `klinestream tune --write-defaults` writes them) for train, the "
        "DAGs and the demo; unset = the project's committed pipelines/defaults.json.",
    )

    # --- market ----------------------------------------------------------------------------------
    symbols: Annotated[tuple[str, ...], NoDecode] = Field(DEFAULT_SYMBOLS, description="Context symbols.")
    traded_symbol: str = Field("BTCUSDT", description="The symbol the agent trades.")
    interval: Literal["1h"] = "1h"
    binance_base_url: str | None = Field(
        None, description="Base URL of a Binance-compatible REST API (the simulator); unset = Binance."
    )
    binance_ws_url: str | None = Field(None, description="Base URL of the kline websocket; unset = Binance.")
    binance_api_key: SecretStr | None = None
    binance_api_secret: SecretStr | None = None

    # --- services --------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_klines: str = "klines.1h"
    kafka_topic_dlq: str = "klines.dlq"
    cassandra_hosts: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.1",)
    cassandra_port: int = Field(9042, ge=1, le=65535)
    cassandra_keyspace: str = Field("klinestream", pattern=r"^[a-z][a-z0-9_]{0,47}$")
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    mlflow_model_name: str = "klinestream-dqn"
    airflow_api_url: str = "http://127.0.0.1:8080"

    # --- service credentials (docs/security.md; `klinestream stack up` generates the local stack's) -------
    secrets_file: Path | None = Field(
        None,
        description="File of service passwords (KEY=value lines, mode 0600) read after .env; default "
        f"<home>/{SECRETS_FILE_NAME}, which `klinestream stack up` writes the first time.",
    )
    kafka_admin_password: SecretStr | None = None
    kafka_ingestor_password: SecretStr | None = None
    kafka_stream_password: SecretStr | None = None
    kafka_writer_password: SecretStr | None = None
    cassandra_admin_password: SecretStr | None = None
    cassandra_stream_password: SecretStr | None = None
    cassandra_dashboard_password: SecretStr | None = None
    cassandra_operator_password: SecretStr | None = None
    mlflow_admin_password: SecretStr | None = None
    mlflow_stream_password: SecretStr | None = None
    mlflow_writer_password: SecretStr | None = None

    # --- the record path ------------------------------------------------------------------------
    kline_signing_key: SecretStr | None = Field(
        None,
        description=f"Secret (at least {MIN_SECRET_BYTES} bytes) of the HMAC-SHA256 signature every klines.1h "
        "record carries; the stream refuses records without a valid one. Unset: records are not authenticated.",
    )
    stream_start: datetime | None = Field(
        None,
        description="First hour a new stream takes (UTC, ISO-8601, on the hour); a checkpointed stream goes on "
        "from its checkpoint. Unset: the first hour on which a majority of the symbols agree.",
    )
    clock_skew_seconds: float = Field(
        60.0, ge=0.0, le=3600.0, description="How far a kline's close time may be after the time it was written."
    )
    max_batch_attempts: int = Field(
        3, ge=1, le=100, description="Failures of one micro-batch before its records are set aside in the DLQ."
    )

    # --- trading and risk ------------------------------------------------------------------------
    trading_mode: TradingMode = "paper"
    live_confirm: bool = Field(False, description="Second explicit consent required for live trading.")
    fee_rate: float = Field(0.001, ge=0.0, lt=0.1, description="Fee per side as a fraction of notional.")
    slippage_bps: float = Field(0.0, ge=0.0, le=1000.0)
    max_position_units: float = Field(5.0, gt=0.0)
    max_order_notional: float = Field(100_000.0, gt=0.0)
    daily_loss_limit: float = Field(10_000.0, gt=0.0)
    kill_switch: bool = False

    # --- dashboard -------------------------------------------------------------------------------
    dashboard_password: SecretStr | None = Field(
        None,
        description="Password of the dashboard's login, which guards the kill-switch toggle (and every page when "
        "the dashboard listens beyond loopback). Unset: no login, the toggle is off. Never logged.",
    )
    dashboard_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Host names and addresses the dashboard answers to (comma-separated, no port); a request with "
        "another Host header is refused (DNS rebinding). Unset: the address it listens on, localhost, 127.0.0.1, ::1.",
    )
    dashboard_window_hours: int = Field(
        168, ge=1, le=8784, description="Hours of rows and klines the dashboard's first load reads (older on demand)."
    )
    dashboard_stale_after_seconds: float = Field(
        3900.0, gt=0.0, description="A trader whose last decision was written longer ago than this shows as stale."
    )
    dashboard_session_hours: float = Field(12.0, gt=0.0, le=720.0, description="Lifetime of a dashboard login.")
    # --- shadow challenger and live monitor (streaming/shadow.py, streaming/monitor.py) ---------------
    shadow_challenger: bool = Field(
        False,
        description="Run the registry's challenger beside the champion in shadow mode (trader <trader id>.shadow: "
        "decisions and hypothetical fills, no order sent).",
    )
    monitor_enabled: bool = Field(
        True, description="Compare the champion with its baselines over a rolling window and alert when it trails."
    )
    monitor_window_hours: int = Field(
        168, ge=2, le=24 * 366, description="Hour-steps of the monitor's window (168 = 7 days of decided hours)."
    )
    monitor_margin: float = Field(
        0.01, ge=0.0, lt=1.0, description="How far below each baseline's window return the champion trails it."
    )
    monitor_baselines: Annotated[tuple[str, ...], NoDecode] = Field(
        ("cash", "buy_hold", "challenger"),
        description="What the champion must trail, each by the margin: any of cash, buy_hold, challenger.",
    )
    monitor_auto_rollback: bool = Field(
        False, description="When the champion trails, roll back to the previous champion (klinestream promote "
        "--rollback) and tag both versions with why.",
    )  # fmt: skip

    # --- compute ---------------------------------------------------------------------------------
    device: Device = "auto"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env_file = getattr(dotenv_settings, "env_file", None)
        return init_settings, env_settings, _DotEnvBesideItsFile(settings_cls, env_file=env_file), file_secret_settings

    # --- operations: metrics, health, alerts ------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="Interface the stream's and ingestor's /metrics listen on.")
    stream_metrics_port: int = Field(
        9101, ge=0, le=65535, description="Port of the stream's /metrics, /health and /ready (0 = no endpoint)."
    )
    ingestor_metrics_port: int = Field(
        9102, ge=0, le=65535, description="Port of the ingestor's /metrics, /health and /ready (0 = no endpoint)."
    )
    dashboard_port: int = Field(8050, ge=1, le=65535, description="Port of the supervised dashboard (stack --live).")
    simulator_port: int = Field(
        8900, ge=1, le=65535, description="Port of the supervised exchange simulator (stack --live, offline)."
    )
    live_programs: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Live programs `stack up --live` supervises (comma-separated); empty = all that apply."
    )
    live_stream_args: str = Field(
        "", description="Extra arguments of the supervised `klinestream stream`, e.g. `--model-dir models/1`."
    )
    telegram_bot_token: SecretStr | None = Field(
        None, description="Token of the Telegram bot that sends alerts and answers commands; unset = no Telegram."
    )
    telegram_chat_ids: Annotated[tuple[int, ...], NoDecode] = Field(
        (), description="Chats (comma-separated ids) that receive alerts and whose commands the bot answers."
    )
    telegram_api_url: str = Field(
        "https://api.telegram.org", description="Root of the Telegram Bot API (a local stand-in in tests)."
    )
    alert_order_filled: bool = Field(False, description="Also alert on every filled order.")
    stale_after_minutes: float = Field(
        15.0, gt=0.0, le=1440.0, description="Alert when no kline of an hour came this long after the hour closed."
    )
    dead_letter_burst: int = Field(
        20, ge=1, description="Alert when this many records are dead-lettered within dead_letter_burst_minutes."
    )
    dead_letter_burst_minutes: float = Field(10.0, gt=0.0, le=1440.0)

    @field_validator(
        "data_dir",
        "lake_dir",
        "defaults_file",
        "binance_base_url",
        "binance_ws_url",
        "binance_api_key",
        "binance_api_secret",
        "kline_signing_key",
        "stream_start",
        "dashboard_password",
        "secrets_file",
        "telegram_bot_token",
        *PASSWORD_FIELDS,
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """``KLINESTREAM_DATA_DIR=`` (empty) means unset, not the current directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "symbols",
        "cassandra_hosts",
        "dashboard_allowed_hosts",
        "monitor_baselines",
        "telegram_chat_ids",
        "live_programs",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("needs at least one symbol, e.g. BTCUSDT,ETHUSDT")
        bad = [s for s in value if not s.isalnum() or s.upper() != s]
        if bad:
            raise ValueError(f"symbols must be upper-case alphanumeric, got {bad}")
        return value

    @field_validator("dashboard_allowed_hosts")
    @classmethod
    def _host_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".") for host in value)
        bad = [host for host in names if not host or any(c in host for c in "/@ ") or host.count(":") == 1]
        if bad:
            raise ValueError(f"must be host names or addresses without scheme or port, got {bad}")
        return names

    @field_validator("dashboard_password")
    @classmethod
    def _password_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_DASHBOARD_PASSWORD:
            raise ValueError(f"must be at least {MIN_DASHBOARD_PASSWORD} characters long")
        return value

    @field_validator("monitor_baselines")
    @classmethod
    def _check_baselines(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = ("cash", "buy_hold", "challenger")
        unknown = [b for b in value if b not in known]
        if not value or unknown:
            raise ValueError(f"must be a comma-separated subset of {','.join(known)}, got {','.join(value) or 'none'}")
        return value

    @field_validator("kline_signing_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes long")
        return value

    @field_validator(*PASSWORD_FIELDS)
    @classmethod
    def _usable_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not PASSWORD_PATTERN.match(value.get_secret_value()):
            raise ValueError("must be 16 to 256 characters among letters, digits and . _ ~ + / = -")
        return value

    @field_validator("stream_start")
    @classmethod
    def _on_the_hour(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if (value.minute, value.second, value.microsecond) != (0, 0, 0):
            raise ValueError("must be on the hour, e.g. 2023-01-01T00:00:00Z")
        return value

    @field_validator("home", "data_dir", "lake_dir", "defaults_file", "secrets_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.traded_symbol not in self.symbols:
            raise _named_error("traded_symbol", f"{self.traded_symbol!r} is not one of the symbols {self.symbols}")
        if self.trading_mode in ("testnet", "live"):
            for name in ("binance_api_key", "binance_api_secret"):
                secret = getattr(self, name)
                if secret is None or not secret.get_secret_value():
                    raise _named_error(name, f"is required when trading_mode={self.trading_mode}")
        if self.trading_mode == "live" and not self.live_confirm:
            raise _named_error("live_confirm", "must be true to trade real money (trading_mode=live)")
        if self.telegram_bot_token is not None and not self.telegram_chat_ids:
            raise _named_error("telegram_chat_ids", "is required when a Telegram bot token is set")
        return self

    @property
    def lake_root(self) -> Path:
        """Where the kline lake lives."""
        return self.lake_dir if self.lake_dir is not None else self.home / "lake"

    @property
    def jvm_dir(self) -> Path:
        """Where ``klinestream stack install`` puts the jars it resolves from Maven Central."""
        return self.home / "jvm"

    @property
    def stack_dir(self) -> Path:
        """Data and logs of the local services, one folder per service."""
        return self.home / "stack"

    @property
    def secrets_path(self) -> Path:
        """The file of service passwords :func:`load_settings` reads (``stack up`` writes the local stack's)."""
        return self.secrets_file if self.secrets_file is not None else self.home / SECRETS_FILE_NAME

    def kafka_credentials(self, principal: KafkaPrincipal) -> Credentials | None:
        """The SCRAM user and password of ``principal``; None when Kafka has no passwords (no authentication)."""
        return self._credentials("kafka", principal)

    def cassandra_credentials(self, role: CassandraRole) -> Credentials | None:
        """The login role and password of ``role``; None when Cassandra has no passwords (no authentication)."""
        return self._credentials("cassandra", role)

    def mlflow_credentials(self, account: MlflowAccount) -> Credentials | None:
        """The basic-auth account of ``account``; None when MLflow has no passwords (no authentication)."""
        return self._credentials("mlflow", account)

    def _credentials(
        self, service: str, principal: KafkaPrincipal | CassandraRole | MlflowAccount
    ) -> Credentials | None:
        field = password_setting(service, principal)
        password = getattr(self, field)
        if password is not None:
            return Credentials(username(principal), password)
        others = [name for name in PASSWORD_FIELDS if name.startswith(f"{service}_") and getattr(self, name)]
        if others:  # authentication is on for this service: connecting without a password would only be refused
            raise SettingsError(
                f"{env_name(field)} is not set, but {service} authentication is on ({env_name(others[0])} is set)"
            )
        return None

    @property
    def stream_start_ms(self) -> int | None:
        """:attr:`stream_start` in epoch milliseconds."""
        return None if self.stream_start is None else int(self.stream_start.timestamp() * 1000)

    def kline_signer(self) -> KlineSigner | None:
        """The signer of klines.1h records (None when no signing key is set)."""
        key = self.kline_signing_key
        return signer_from_secret(key.get_secret_value() if key is not None else None)

    @property
    def traded_index(self) -> int:
        """Position of the traded symbol among the context symbols."""
        return self.symbols.index(self.traded_symbol)


class _NamedError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{env_name(field)} {message}")
        self.field = field


def _named_error(field: str, message: str) -> _NamedError:
    return _NamedError(field, message)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ()) if isinstance(part, str)]
        message = str(item.get("msg", "invalid"))
        if loc:
            value = item.get("input")
            shown = "" if loc[0] in SECRET_FIELDS else f" (got {value!r})"
            lines.append(f"{env_name(loc[0])}: {message}{shown}")
        else:
            # model-level checks already name their variable
            lines.append(message.removeprefix("Value error, "))
    return "invalid settings: " + "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings once, at an entry point; raise SettingsError naming the variable.

    Precedence: ``overrides``, then the environment, then ``.env``, then the secrets file
    (:attr:`Settings.secrets_path`, when it exists: it must be readable by its owner alone), then defaults."""
    try:
        settings = Settings(**overrides)
        secrets = settings.secrets_path
        if not secrets.is_file():
            return settings
        _require_private(secrets)
        dotenv = overrides.pop("_env_file", None) or locate().env_file
        dotenvs = tuple(dotenv) if isinstance(dotenv, list | tuple) else (dotenv,)
        return Settings(_env_file=(secrets, *dotenvs), **overrides)  # the later file wins: .env over secrets
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _require_private(path: Path) -> None:
    """Refuse a secrets file others can read or write (as ssh refuses a private key with such a mode)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SettingsError(f"{path} holds passwords but its mode is {mode:04o}: run `chmod 600 {path}`")
