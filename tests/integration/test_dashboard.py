"""The dashboard on real Cassandra and a real kline lake, driven in headless Chromium over the DevTools protocol.

Three days of a trader's rows (a hot swap from model v3 to v4, filled buys and sells, two orders the risk checks
rejected) and a day of a second trader go through the real sink into a fresh keyspace; their klines go into a
kline lake in a temporary folder, all but the last two hours. The dashboard serves them on a free port with
the chart library ``make install`` built (built here if missing), and Chromium (Debian's ``chromium``, no
network) loads the page. Checked against what was written: the candles and the closes the lake lacks, the
buy/sell and model-swap markers, the orders table with the rejected orders and their reasons, the drawdown
panel, the traders' overview, the tooltip under the mouse, zooming out with the mouse wheel (older hours read
on demand), the kill-switch toggle behind the login (refused without it, the control row changes with it),
the Host allow-list, and that the 2-second refresh reads only the rows from the page's newest hour on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from models.credentials import CassandraRole
from models.kline import HOUR_MS
from models.settings import Settings
from tests.integration.dashboard_rows import (
    CAPITAL,
    HOURS,
    HOURS_NOT_IN_LAKE,
    REJECTED,
    SHADOW,
    SWAP_HOUR,
    SYMBOL,
    T0,
    TRADER,
    write_klines,
    write_trading_days,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = 48  # hours of the first load: the first HOURS - WINDOW hours come only when the user zooms out
PASSWORD = "dashboard-test-password"  # a throwaway dashboard's, in a throwaway keyspace


@dataclass
class Served:
    server: Any
    db: Any
    controls: Any
    written: dict[str, Any]
    klines: Any

    @property
    def url(self) -> str:
        return str(self.server.url)


@pytest.fixture
def served(keyspace_settings: Settings, tmp_path: Path) -> Iterator[Served]:
    from adapters.cassandra.controls import CassandraControls
    from adapters.cassandra.reader import TradeReader
    from adapters.cassandra.session import CassandraSession
    from adapters.cassandra.trade_sink import CassandraTradeSink
    from klinestream.dashboard.api import DashboardReader
    from klinestream.dashboard.assets import ensure_assets
    from klinestream.dashboard.klines import LakeKlines
    from klinestream.dashboard.security import AccessPolicy
    from klinestream.dashboard.server import DashboardServer

    ensure_assets()
    klines = write_klines(tmp_path / "lake")
    db = CassandraSession.connect(keyspace_settings, CassandraRole.STREAM, max_outage_seconds=60)
    try:
        written = write_trading_days(CassandraTradeSink(db))
        write_trading_days(CassandraTradeSink(db), hours=30, first_hour=10, trader=SHADOW)
        controls = CassandraControls(db)
        reader = DashboardReader(TradeReader(db), controls, LakeKlines(tmp_path / "lake"), window_hours=WINDOW)
        access = AccessPolicy.for_server("127.0.0.1", SecretStr(PASSWORD))
        server = DashboardServer(reader, port=0, access=access).start_in_thread()
        try:
            yield Served(server, db, controls, written, klines)
        finally:
            server.stop_thread()
    finally:
        db.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from klinestream.dashboard.headless import Browser, BrowserError

    try:
        page = Browser(1400, 1300)
    except BrowserError as exc:
        pytest.fail(f"{exc} (apt-get install -y chromium)")
    try:
        yield page
    finally:
        page.close()


CHART = "window.klinestream.chart"
TABLE_ROWS = "[...document.querySelectorAll('{} tbody tr')].map(tr => [...tr.cells].map(td => td.textContent))"


def _hour(index: int) -> int:
    return T0 + index * HOUR_MS


def _label(index: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(_hour(index) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def test_the_page_draws_candles_markers_drawdown_orders_and_the_overview_from_cassandra(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    from adapters.cassandra.reader import TradeReader

    orders = TradeReader(served.db).read("orders", TRADER, SYMBOL)
    browser.navigate(served.url)
    browser.wait_for(f"window.klinestream && {CHART}.series.candles.data().length > 0", timeout=60)
    first = HOURS - WINDOW

    candles = browser.evaluate(f"{CHART}.series.candles.data().map(c => [c.time, c.open, c.high, c.low, c.close])")
    lake = served.klines.iloc[first:]
    assert [c[0] * 1000 for c in candles] == lake["open_time"].tolist()  # hours 24 .. 69: the lake's
    ohlc = [value for c in candles for value in c[1:]]
    assert ohlc == pytest.approx(lake[["open", "high", "low", "close"]].to_numpy().ravel().tolist())
    closes = browser.evaluate(f"{CHART}.series.closes.data().map(c => c.time * 1000)")
    assert closes == [_hour(h) for h in range(HOURS - HOURS_NOT_IN_LAKE, HOURS)], "decided hours the lake lacks"

    markers = browser.evaluate(f"[...{CHART}.markers.candles.markers(), ...{CHART}.markers.closes.markers()]")
    in_view = [o for o in orders if o["status"] == "filled" and o["open_time"] >= _hour(first)]
    for shape, side in (("arrowUp", "BUY"), ("arrowDown", "SELL")):
        drawn = sorted(m["time"] * 1000 for m in markers if m["shape"] == shape)
        assert drawn == sorted(o["open_time"] for o in in_view if o["side"] == side) and drawn
    swaps = [m for m in markers if m["shape"] == "square"]
    assert [(m["time"] * 1000, m["text"]) for m in swaps] == [(_hour(SWAP_HOUR), "v4")]
    assert "model changes in view: " + _label(SWAP_HOUR) + " v3 → v4" in browser.evaluate(
        "document.getElementById('model-changes').textContent"
    )

    table = browser.evaluate(TABLE_ROWS.format("#orders"))
    assert len(table) == len([o for o in orders if o["open_time"] >= _hour(first)])
    for hour, (side, reason) in REJECTED.items():
        assert [_label(hour), side, "rejected", reason] in [row[:4] for row in table], table

    equity = served.written["equity_path"][first:]
    peaks = [max(equity[: i + 1]) for i in range(len(equity))]
    worst = min(e / p - 1 for e, p in zip(equity, peaks, strict=True))
    drawn_dd = browser.evaluate(f"{CHART}.series.drawdown.data().map(d => d.value)")
    assert len(drawn_dd) == WINDOW and min(drawn_dd) == pytest.approx(worst * 100) and worst < 0
    card = browser.evaluate("document.getElementById('c-drawdown').textContent")
    assert card.endswith(f"/ {worst * 100:.2f}%"), card

    browser.wait_for("document.querySelectorAll('#overview tbody tr').length >= 2", timeout=30)  # polled beside
    overview = browser.evaluate(TABLE_ROWS.format("#overview"))
    assert [row[:2] for row in overview] == [[TRADER, SYMBOL], [SHADOW, SYMBOL]]
    pnl = served.written["equity"] - CAPITAL
    assert overview[0][3] == ("+" if pnl > 0 else "−") + f"${abs(pnl):,.0f}" and overview[0][8].startswith("ok")
    assert overview[0][7] == f"{_label(HOURS - 1)} hold v4"

    _hover_shows_the_tooltip(browser, served, SWAP_HOUR)
    _zooming_out_loads_the_older_hours(browser, served)
    browser.screenshot(tmp_path / "dashboard.png")
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000
    _the_toggle_works_after_logging_in(browser, served)
    assert browser.errors == [], "the page reported errors (CSP violations, exceptions)"


def _hover_shows_the_tooltip(browser: Any, served: Served, hour: int) -> None:
    close = float(served.klines["close"].iloc[hour])
    x, y = browser.evaluate(
        f"(() => {{ const c = {CHART}, box = document.getElementById('chart').getBoundingClientRect();"
        f" return [box.left + c.chart.timeScale().timeToCoordinate({_hour(hour) // 1000}),"
        f" box.top + c.series.candles.priceToCoordinate({close})]; }})()"
    )
    browser.move_mouse(x, y)
    tooltip = "document.getElementById('tooltip')"
    text = browser.wait_for(f"!{tooltip}.hidden && {tooltip}.innerText")
    assert f"{_label(hour)} UTC" in text and f"C {close:.2f}" in text, text
    assert "decision" in text and "model v3 → v4" in text and "drawdown" in text, text


def _zooming_out_loads_the_older_hours(browser: Any, served: Served) -> None:
    x, y = browser.evaluate("(() => { const b = document.getElementById('chart').getBoundingClientRect();"
                            " return [b.left + b.width / 2, b.top + 100]; })()")  # fmt: skip
    for _ in range(12):  # the mouse wheel zooms out until the view passes the oldest hour held
        browser.call("Input.dispatchMouseEvent", type="mouseWheel", x=x, y=y, deltaX=0, deltaY=400)
        if browser.evaluate(f"{CHART}.series.candles.data().length") > WINDOW:
            break
    browser.wait_for(f"{CHART}.series.candles.data().length === {HOURS - HOURS_NOT_IN_LAKE}", timeout=30)
    assert browser.evaluate("window.klinestream.state.older") is False
    assert browser.evaluate(f"{CHART}.series.equity.data().length") == HOURS


def _the_toggle_works_after_logging_in(browser: Any, served: Served) -> None:
    assert browser.evaluate("document.getElementById('kill-controls').hidden") is True
    browser.evaluate(f"document.getElementById('password').value = {PASSWORD!r};"
                     " document.getElementById('login').requestSubmit(); true")  # fmt: skip
    browser.wait_for("!document.getElementById('kill-controls').hidden")
    assert served.controls.kill_switch_active(TRADER) is False
    browser.evaluate("document.getElementById('kill-trader').click(); true")
    browser.wait_for("document.getElementById('c-kill').textContent === 'ON — orders stopped'")
    assert served.controls.kill_switch_active(TRADER) is True
    assert served.controls.kill_switch_active(SHADOW) is False, "only this trader's switch"


def _control_row(served: Served, trader: str) -> Any:
    query = f"SELECT active, reason FROM {served.db.keyspace}.controls WHERE name = %s"
    rows = list(served.db.session.execute(query, (f"kill_switch:{trader}",)))
    return rows[0] if rows else None


def test_the_kill_switch_post_needs_the_login_and_its_csrf_token(served: Served) -> None:
    url, client = served.url, requests.Session()
    post = f"{url}api/kill-switch"
    stop = {"active": True, "trader_id": TRADER, "reason": "test"}

    assert client.post(post, json=stop, timeout=10).status_code == 401
    assert client.post(f"{url}api/login", json={"password": "wrong password"}, timeout=10).status_code == 401
    login = client.post(f"{url}api/login", json={"password": PASSWORD}, timeout=10)
    assert login.status_code == 200
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie, cookie
    csrf = login.json()["csrf"]
    assert client.get(f"{url}api/session", timeout=10).json()["csrf"] == csrf

    assert client.post(post, json=stop, timeout=10).status_code == 403, "no CSRF token"
    assert client.post(post, json=stop, headers={"X-CSRF-Token": "forged"}, timeout=10).status_code == 403
    assert client.post(post, data={"active": "true"}, headers={"X-CSRF-Token": csrf}, timeout=10).status_code == 415
    evil = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert client.post(post, json=stop, headers=evil, timeout=10).status_code == 403
    assert _control_row(served, TRADER) is None and served.controls.kill_switch_active(TRADER) is False

    done = client.post(post, json=stop, headers={"X-CSRF-Token": csrf}, timeout=10)
    assert done.status_code == 200 and done.json()["kill_switch"] is True
    row = _control_row(served, TRADER)
    assert row.active is True and row.reason == "dashboard: test"
    resume = {"active": False, "trader_id": TRADER}
    assert client.post(post, json=resume, headers={"X-CSRF-Token": csrf}, timeout=10).json()["kill_switch"] is False
    assert served.controls.kill_switch_active(TRADER) is False

    assert client.post(f"{url}api/logout", json={}, headers={"X-CSRF-Token": csrf}, timeout=10).status_code == 200
    assert client.post(post, json=stop, headers={"X-CSRF-Token": csrf}, timeout=10).status_code == 401
    assert served.controls.kill_switch_active(TRADER) is False


def test_the_host_allow_list_refuses_a_rebound_name(served: Served) -> None:
    port = served.server.port
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        for path in ("", "api/overview", "static/app.js"):
            refused = requests.get(f"{served.url}{path}", headers={"Host": host}, timeout=10)
            assert refused.status_code == 403 and "KLINESTREAM_DASHBOARD_ALLOWED_HOSTS" in refused.text
        login = requests.post(f"{served.url}api/login", json={"password": PASSWORD}, headers={"Host": host}, timeout=10)
        assert login.status_code == 403 and "Set-Cookie" not in login.headers
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert requests.get(f"{served.url}api/overview", headers={"Host": host}, timeout=10).status_code == 200
    page = requests.get(served.url, timeout=10)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


class CountingReader:
    """The real TradeReader, counting the rows each read returns (and refusing whole-partition reads)."""

    def __init__(self, reader: Any) -> None:
        self.reader, self.calls = reader, []

    def read(self, table: str, trader_id: str, symbol: str) -> list[dict[str, Any]]:
        raise AssertionError(f"whole partition read of {table}")

    def read_hours(self, table: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        rows = self.reader.read_hours(table, *args, **kwargs)
        self.calls.append((table, kwargs.get("start"), kwargs.get("limit"), len(rows)))
        return rows

    def newest_decision(self, trader_id: str, symbol: str) -> dict[str, Any] | None:
        row = self.reader.newest_decision(trader_id, symbol)
        self.calls.append(("decisions", None, 1, int(row is not None)))
        return row

    def traders(self) -> list[tuple[str, str]]:
        return list(self.reader.traders())

    def fetched(self) -> int:
        rows = sum(call[3] for call in self.calls)
        self.calls.clear()
        return rows


def test_the_refresh_reads_only_the_rows_from_the_page_s_newest_hour_on(keyspace_settings: Settings) -> None:
    from adapters.cassandra.controls import CassandraControls
    from adapters.cassandra.reader import TradeReader
    from adapters.cassandra.session import CassandraSession
    from adapters.cassandra.trade_sink import CassandraTradeSink
    from klinestream.dashboard.api import DashboardReader
    from klinestream.dashboard.server import DashboardServer

    db = CassandraSession.connect(keyspace_settings, CassandraRole.STREAM, max_outage_seconds=60)
    server = None
    try:
        sink, trades = CassandraTradeSink(db), TradeReader(db)
        write_trading_days(sink, hours=60)
        partition = sum(len(trades.read(t, TRADER, SYMBOL)) for t in ("decisions", "orders", "positions"))
        counting = CountingReader(trades)
        server = DashboardServer(DashboardReader(counting, CassandraControls(db), None, window_hours=24), port=0)
        server.start_in_thread()
        window = f"{server.url}api/window?trader={TRADER}&symbol={SYMBOL}"

        first = requests.get(window, timeout=30).json()
        first_rows = counting.fetched()
        assert first["cursor"] == _hour(59) and first_rows < partition / 2, (first_rows, partition)

        def rows_of(hours: range) -> int:
            return sum(1 for t in ("decisions", "orders", "positions") for r in trades.read(t, TRADER, SYMBOL)
                       if r["open_time"] in {_hour(h) for h in hours})  # fmt: skip

        quiet = requests.get(f"{window}&after={first['cursor']}", timeout=30).json()
        assert counting.fetched() == rows_of(range(59, 60)) and quiet["cursor"] == _hour(59)

        later = write_trading_days(sink, hours=63, first_hour=60)  # three new hours
        newer = requests.get(f"{window}&after={quiet['cursor']}", timeout=30).json()
        assert counting.fetched() == rows_of(range(59, 63)), "the page's newest hour again, and the three new ones"
        assert [d["open_time"] for d in newer["decisions"]] == [_hour(h) for h in range(59, 63)]
        assert newer["cursor"] == _hour(62) and newer["truncated"] is False

        overview = requests.get(f"{server.url}api/overview", timeout=30).json()
        assert [t["trader_id"] for t in overview["traders"]] == [TRADER]
        assert counting.fetched() == 3, "first and last position, newest decision: one row each"
        assert overview["traders"][0]["pnl"] == pytest.approx(later["equity"] - CAPITAL)
    finally:
        if server is not None:
            server.stop_thread()
        db.close()
