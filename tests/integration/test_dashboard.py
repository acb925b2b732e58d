"""The dashboard on real Cassandra, rendered by headless Chromium.

Two days of decisions, orders and positions go through the real sink API into a fresh keyspace, the kill
switch of the trader is turned on, the dashboard serves them on a free port, and Chromium (Debian's
``/usr/bin/chromium``, no network) loads the page: the rendered DOM must hold the decision rows with their
model version, the kill-switch state, the P&L figures and one SVG marker per filled buy and sell. The
screenshot is copied to docs/img/dashboard.png (the README's) when KLINESTREAM_UPDATE_DOCS=1.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from models.kline import HOUR_MS
from models.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
T0 = 1_672_531_200_000  # 2023-01-01 00:00 UTC
HOURS = 48
TRADER, SYMBOL, VERSION = "demo-dashboard-test", "BTCUSDT", "7"


def _action(hour: int, units: float) -> int:
    """Buy at the troughs of a 12-hour cycle, sell what is held at the crests."""
    wanted = {9: 1, 10: 1, 3: 2, 4: 2}.get(hour % 12, 0)
    return 0 if wanted == 2 and units <= 0 else wanted


def write_trading_days(sink: Any) -> dict[str, Any]:
    """Decisions, orders and positions of a trader over ``HOURS`` hours; returns what was written."""
    from models.records import DecisionRecord, OrderRecord, PositionRecord, client_order_id

    units, cash, filled = 0.0, 100_000.0, {"BUY": 0, "SELL": 0}
    first_price = 16_500.0
    for hour in range(HOURS):
        t, price = T0 + hour * HOUR_MS, 16_500.0 + 150.0 * math.sin(2 * math.pi * hour / 12) + 5.0 * hour
        action = _action(hour, units)
        order_id = client_order_id(TRADER, VERSION, SYMBOL, t) if action else None
        side = {1: "BUY", 2: "SELL"}.get(action)
        if side is not None and order_id is not None:
            fee = price * 0.001
            units, cash = (units + 1, cash - price - fee) if side == "BUY" else (units - 1, cash + price - fee)
            filled[side] += 1
            sink.write_order(OrderRecord(TRADER, SYMBOL, t, order_id, VERSION, side, 1.0, price, "filled", None, 1.0,
                                         price, fee, "paper", None, hour))  # fmt: skip
        sink.write_decision(DecisionRecord(TRADER, SYMBOL, t, VERSION, action, action, 0.1, 0.2 if action == 1 else 0.0,
                                           0.3 if action == 2 else 0.0, price, 0.01, False, hour * 3, False, True, hour,
                                           order_id, "filled" if action else None))  # fmt: skip
        sink.write_position(PositionRecord(TRADER, SYMBOL, t, VERSION, units, cash, cash + units * price,
                                           100_000.0 * price / first_price, 0.0, 0.0, 100_000.0, hour))  # fmt: skip
    sink.flush()
    return {"buys": filled["BUY"], "sells": filled["SELL"], "equity": cash + units * price,
            "buy_hold": 100_000.0 * price / first_price, "last_hour": T0 + (HOURS - 1) * HOUR_MS}  # fmt: skip


def render_page(url: str, tmp_path: Path) -> tuple[str, Path]:
    """Chromium headless, no network beyond localhost: the DOM after the scripts ran, and a screenshot."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install -y chromium")
    png = tmp_path / "dashboard.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900",
               "--virtual-time-budget=8000", f"--screenshot={png}", "--dump-dom", url]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, png


def card(dom: str, element_id: str) -> tuple[str, str]:
    """(class, text) of a summary card's value element in the rendered DOM."""
    match = re.search(rf'<div (?=[^>]*id="{element_id}")[^>]*class="([^"]*)"[^>]*>(.*?)</div>', dom)
    assert match is not None, f"no element #{element_id} in the page"
    return match.group(1), match.group(2)


def test_dashboard_renders_decisions_markers_pnl_and_kill_switch_from_cassandra(
    keyspace_settings: Settings, tmp_path: Path
) -> None:
    from adapters.cassandra.controls import CassandraControls
    from adapters.cassandra.reader import TradeReader
    from adapters.cassandra.session import CassandraSession
    from adapters.cassandra.trade_sink import CassandraTradeSink
    from klinestream.dashboard.api import DashboardReader
    from klinestream.dashboard.server import DashboardServer

    db = CassandraSession.connect(keyspace_settings, max_outage_seconds=60)
    controls = CassandraControls(db)
    server = DashboardServer(DashboardReader(TradeReader(db), controls), port=0)
    try:
        written = write_trading_days(CassandraTradeSink(db))
        controls.set_kill_switch(True, "dashboard test", trader_id=TRADER)
        server.start_in_thread()
        summary = requests.get(f"{server.url}api/summary", timeout=30).json()
        dom, png = render_page(server.url, tmp_path)
    finally:
        server.stop_thread()
        db.close()

    assert summary["trader_id"] == TRADER and summary["decisions"] == HOURS and summary["kill_switch"] is True
    assert summary["orders"]["buy"] == written["buys"] and summary["orders"]["sell"] == written["sells"]
    assert summary["pnl"] == pytest.approx(written["equity"] - 100_000.0)
    assert summary["buy_hold_pnl"] == pytest.approx(written["buy_hold"] - 100_000.0)

    rows = re.findall(r'<tr class="decision">(.*?)</tr>', dom, flags=re.S)
    assert len(rows) == 15, "the page shows the 15 newest decisions"
    assert "2023-01-02 23:00" in rows[0] and all(f"<td>v{VERSION}</td>" in row for row in rows)
    assert card(dom, "c-kill") == ("value on", "ON — orders stopped")
    assert card(dom, "c-orders") == ("value", f"{written['buys']} / {written['sells']}")
    assert card(dom, "c-model") == ("value", f"v{VERSION}")
    assert card(dom, "c-decisions") == ("value", str(HOURS))
    assert len(re.findall(r'<polygon[^>]*class="marker buy"', dom)) == written["buys"]
    assert len(re.findall(r'<polygon[^>]*class="marker sell"', dom)) == written["sells"]
    assert len(re.findall(r'<path d="M[^"]+" class="line equity"', dom)) == 1
    assert png.stat().st_size > 10_000
    if os.environ.get("KLINESTREAM_UPDATE_DOCS") == "1":  # refresh the README's screenshot on request
        shutil.copyfile(png, SCREENSHOT)
