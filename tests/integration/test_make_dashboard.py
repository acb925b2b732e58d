"""The README's ``make dashboard``, run as a subprocess against a fresh Cassandra keyspace with two trading days.

``make dashboard`` depends on ``install``: the test passes ``-o .venv/.klinestream-installed`` so that make
treats the Python install as done and never re-syncs the shared virtualenv under the running tests (in CI
``make install`` ran first, so this changes nothing there). ``klinestream stack install`` still runs, as it
does for a user (idempotent, a few seconds). The page and the JSON it serves are read over HTTP, then the
whole process group (make and the dashboard) is killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest
import requests

from klinestream.demo.summary import trade_figures
from models.credentials import CassandraRole
from models.kline import HOUR_MS
from models.settings import Settings
from tests.integration.dashboard_rows import HOURS, SYMBOL, T0, TRADER, VERSION, write_trading_days
from tests.readme import README, REPO_ROOT
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

URL = "http://127.0.0.1:8050/"
SECOND_DAY = T0 + 24 * HOUR_MS  # the README's dashboard address (klinestream dashboard's default port)


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5)
    except requests.RequestException:
        return None


def test_make_dashboard_serves_the_page_and_the_summary_of_the_keyspace(keyspace_settings: Settings) -> None:
    from adapters.cassandra.reader import TradeReader
    from adapters.cassandra.session import CassandraSession
    from adapters.cassandra.trade_sink import CassandraTradeSink

    assert "`make dashboard`" in README.read_text(), "the README no longer names `make dashboard`"
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8050)) == 0:
            pytest.fail("port 8050 (the dashboard's) is held by another program")
    db = CassandraSession.connect(keyspace_settings, CassandraRole.STREAM, max_outage_seconds=60)
    try:
        written = write_trading_days(CassandraTradeSink(db))
        rows = [TradeReader(db).read(table, TRADER, SYMBOL) for table in ("decisions", "orders", "positions")]
    finally:
        db.close()

    env = {**os.environ, "KLINESTREAM_CASSANDRA_KEYSPACE": keyspace_settings.cassandra_keyspace,
           "KLINESTREAM_CASSANDRA_PORT": str(keyspace_settings.cassandra_port)}  # fmt: skip
    command = ["make", "-o", ".venv/.klinestream-installed", "dashboard"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: process.poll() is None and (r := _get(URL)) is not None and r.ok, 120)
        page = requests.get(URL, timeout=10)
        summary = requests.get(f"{URL}api/summary", timeout=30).json()
        decisions = requests.get(f"{URL}api/decisions", timeout=30).json()
        second_day = requests.get(f"{URL}api/summary", params={"since": SECOND_DAY}, timeout=30).json()
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        output = process.communicate(timeout=30)[0]
    wait_for(lambda: _get(URL) is None, 10, message="the dashboard outlived its process group")

    assert "dashboard: http://127.0.0.1:8050/" in output, output[-2000:]
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<title>Klinestream — live trader</title>" in page.text and 'id="c-kill"' in page.text
    assert summary["trader_id"] == TRADER and summary["decisions"] == HOURS
    assert summary["orders"]["buy"] == written["buys"] and summary["orders"]["sell"] == written["sells"]
    assert summary["pnl"] == pytest.approx(written["equity"] - 100_000.0)
    assert summary["kill_switch"] is False
    assert len(decisions) == 20 and all(str(r["model_version"]) == VERSION for r in decisions)  # ?limit=20
    # the demo's summary of a replay starting on day two, and the dashboard's ?since= of that hour, agree
    figures = trade_figures(*rows, SECOND_DAY, T0 + HOURS * HOUR_MS)
    assert second_day["pnl"] == pytest.approx(figures.pnl)
    assert second_day["decisions"] == figures.decisions == HOURS - 24
    assert second_day["buy_hold_pnl"] == pytest.approx(figures.buy_hold_pnl)
    assert second_day["pnl"] != pytest.approx(summary["pnl"]), "day one's trades should count only without since"
