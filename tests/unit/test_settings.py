"""Settings: validated at start-up, errors name the variable, secrets never leak."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from models.errors import SettingsError
from models.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Isolate from the developer's environment and the checkout's .env (if they have one)."""
    import os

    for name in list(os.environ):
        if name.startswith("KLINESTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.setitem(Settings.model_config, "env_file", tmp_path / "no-such.env")
    monkeypatch.chdir(tmp_path)


def test_defaults_are_paper_trading_on_local_services() -> None:
    settings = load_settings()
    assert settings.trading_mode == "paper"
    assert settings.traded_symbol == "BTCUSDT"
    assert settings.symbols == ("BNBUSDT", "BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT")
    assert settings.kill_switch is False
    assert settings.home.is_absolute()


def test_environment_overrides_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINESTREAM_SYMBOLS", "BTCUSDT, ETHUSDT")
    monkeypatch.setenv("KLINESTREAM_FEE_RATE", "0.00075")
    settings = load_settings()
    assert settings.symbols == ("BTCUSDT", "ETHUSDT")
    assert settings.fee_rate == pytest.approx(0.00075)
    assert settings.traded_index == 0


def test_dotenv_file_is_read_from_its_place_not_from_the_working_folder(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KLINESTREAM_CASSANDRA_KEYSPACE=ks_from_dotenv\n")
    assert load_settings().cassandra_keyspace == "klinestream"  # the working folder's .env is not the project's
    assert load_settings(_env_file=tmp_path / ".env").cassandra_keyspace == "ks_from_dotenv"


def test_the_default_env_file_and_home_are_the_checkouts() -> None:
    from models.settings import locate
    from tests.readme import REPO_ROOT

    assert locate().env_file == REPO_ROOT / ".env" and load_settings().home == REPO_ROOT / "var"


def test_missing_key_for_testnet_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINESTREAM_TRADING_MODE", "testnet")
    with pytest.raises(SettingsError, match="KLINESTREAM_BINANCE_API_KEY is required"):
        load_settings()


def test_live_needs_keys_and_a_second_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINESTREAM_TRADING_MODE", "live")
    monkeypatch.setenv("KLINESTREAM_BINANCE_API_KEY", "k" * 32)
    monkeypatch.setenv("KLINESTREAM_BINANCE_API_SECRET", "s" * 32)
    with pytest.raises(SettingsError, match="KLINESTREAM_LIVE_CONFIRM must be true"):
        load_settings()
    monkeypatch.setenv("KLINESTREAM_LIVE_CONFIRM", "true")
    assert load_settings().trading_mode == "live"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KLINESTREAM_CASSANDRA_PORT", "not-a-port"),
        ("KLINESTREAM_CASSANDRA_PORT", "70000"),
        ("KLINESTREAM_TRADING_MODE", "yolo"),
        ("KLINESTREAM_FEE_RATE", "-0.1"),
        ("KLINESTREAM_SYMBOLS", "btc-usdt"),
        ("KLINESTREAM_TRADED_SYMBOL", "DOGEUSDT"),
    ],
)
def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert variable in str(info.value)


def test_secret_never_appears_in_repr_dump_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Zq8rT2vB7nW4xY1pL6kM3sD9fG5hJ0aQ"
    monkeypatch.setenv("KLINESTREAM_TRADING_MODE", "testnet")
    monkeypatch.setenv("KLINESTREAM_BINANCE_API_KEY", "public-key-id")
    monkeypatch.setenv("KLINESTREAM_BINANCE_API_SECRET", secret)
    settings = load_settings()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("klinestream.test").info("settings: %s / %r", settings, settings)
    assert secret not in repr(settings)
    assert secret not in str(settings)
    assert secret not in str(settings.model_dump())
    assert secret not in settings.model_dump_json()
    assert secret not in caplog.text
    # ...but the program itself can still read it
    assert settings.binance_api_secret is not None
    assert settings.binance_api_secret.get_secret_value() == secret


def test_invalid_secret_is_not_echoed_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINESTREAM_TRADING_MODE", "testnet")
    monkeypatch.setenv("KLINESTREAM_BINANCE_API_KEY", "public-key-id")
    monkeypatch.setenv("KLINESTREAM_BINANCE_API_SECRET", "")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "KLINESTREAM_BINANCE_API_SECRET" in str(info.value)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(Exception, match="frozen"):
        settings.kill_switch = True  # type: ignore[misc]


def test_empty_optional_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINESTREAM_DATA_DIR", "")
    monkeypatch.setenv("KLINESTREAM_BINANCE_BASE_URL", " ")
    settings = load_settings()
    assert settings.data_dir is None
    assert settings.binance_base_url is None
