"""`klinestream kill-switch on|off|status` flips the control row that running traders read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.cassandra.controls import CassandraControls
from adapters.cassandra.session import CassandraSession
from models.credentials import CassandraRole
from models.settings import Settings

pytestmark = pytest.mark.integration

KLINESTREAM = str(Path(sys.executable).with_name("klinestream"))


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KLINESTREAM_CASSANDRA_KEYSPACE": settings.cassandra_keyspace,
           "KLINESTREAM_CASSANDRA_PORT": str(settings.cassandra_port)}  # fmt: skip
    return subprocess.run([KLINESTREAM, "kill-switch", *args], env=env, capture_output=True, text=True, timeout=120)


def test_kill_switch_on_then_off_is_seen_by_traders(keyspace_settings: Settings) -> None:
    on = _cli(keyspace_settings, "on", "--reason", "test", "--trader", "paper-BTCUSDT")
    assert on.returncode == 0, on.stderr
    assert "ON" in on.stdout

    db = CassandraSession.connect(keyspace_settings, CassandraRole.OPERATOR, max_outage_seconds=30)
    try:
        controls = CassandraControls(db)
        assert controls.for_trader("paper-BTCUSDT").kill_switch_active()
        assert not controls.for_trader("paper-ETHUSDT").kill_switch_active()  # only the trader named

        off = _cli(keyspace_settings, "off", "--trader", "paper-BTCUSDT")
        assert off.returncode == 0, off.stderr
        assert not controls.for_trader("paper-BTCUSDT").kill_switch_active()
    finally:
        db.close()


def test_bad_state_exits_non_zero_with_one_line(keyspace_settings: Settings) -> None:
    result = _cli(keyspace_settings, "maybe")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "'maybe' is not one of 'on', 'off', 'status'" in result.stderr


def test_status_json_carries_the_figures_of_the_text(keyspace_settings: Settings) -> None:
    import json

    assert _cli(keyspace_settings, "on", "--trader", "paper-ETHUSDT").returncode == 0
    for trader, active in (("paper-ETHUSDT", True), ("paper-BTCUSDT", False)):
        text = _cli(keyspace_settings, "status", "--trader", trader)
        as_json = _cli(keyspace_settings, "status", "--trader", trader, "--json")
        assert text.returncode == as_json.returncode == 0, as_json.stderr
        report = json.loads(as_json.stdout)
        assert report == {"kill_switch": "on" if active else "off", "active": active, "trader": trader}
        expected = "kill switch ON: new orders stopped" if active else "kill switch off"
        assert text.stdout.strip() == f"{expected} (trader {trader})"
