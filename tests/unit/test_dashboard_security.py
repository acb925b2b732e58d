"""The dashboard's doors without a database: Host allow-list, login, CSRF, the read gate beyond loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from klinestream.dashboard.api import DashboardReader
from klinestream.dashboard.security import (
    MAX_FAILURES,
    AccessPolicy,
    Sessions,
    default_allowed_hosts,
    host_name,
    is_loopback,
)
from klinestream.dashboard.server import build_app
from models.errors import SettingsError
from models.settings import load_settings
from tests.unit.dashboard_fakes import ListTrades

PASSWORD = "unit-test-password"
TRADER = "paper-BTCUSDT"


def test_host_names_are_parsed_without_port_and_malformed_ones_refused() -> None:
    assert host_name("LocalHost:8050") == "localhost" and host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("[::1]:8050") == "::1" and host_name("[::1]") == "::1"
    assert host_name("dash.local.:80") == "dash.local"
    for bad in (None, "", "[::1", "host:port", "[::1]x", "a:1:2"):
        assert host_name(bad) is None, bad


def test_the_default_allow_list_is_loopback_and_the_bound_address() -> None:
    assert default_allowed_hosts("127.0.0.1") == {"localhost", "127.0.0.1", "::1"}
    assert default_allowed_hosts("192.168.1.5") == {"localhost", "127.0.0.1", "::1", "192.168.1.5"}
    assert default_allowed_hosts("0.0.0.0") == {"localhost", "127.0.0.1", "::1"}
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")


def test_a_dashboard_beyond_loopback_needs_a_password_and_then_a_login_to_read() -> None:
    with pytest.raises(SettingsError, match="KLINESTREAM_DASHBOARD_PASSWORD"):
        AccessPolicy.for_server("0.0.0.0")
    policy = AccessPolicy.for_server("0.0.0.0", SecretStr(PASSWORD), ("dashboard",))
    assert policy.reads_need_login and policy.allowed_hosts == {"dashboard"}
    assert not AccessPolicy.for_server("127.0.0.1").reads_need_login


def test_the_dashboard_settings_are_read_from_the_environment_and_the_password_never_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KLINESTREAM_DASHBOARD_ALLOWED_HOSTS", "Dash.Example., [::1]")
    monkeypatch.setenv("KLINESTREAM_DASHBOARD_PASSWORD", "short")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "KLINESTREAM_DASHBOARD_PASSWORD" in str(error.value) and "short" not in str(error.value)
    monkeypatch.setenv("KLINESTREAM_DASHBOARD_PASSWORD", PASSWORD)
    settings = load_settings()
    assert settings.dashboard_allowed_hosts == ("dash.example", "::1") and PASSWORD not in repr(settings)
    monkeypatch.setenv("KLINESTREAM_DASHBOARD_ALLOWED_HOSTS", "dash.example:8050")
    with pytest.raises(SettingsError, match="KLINESTREAM_DASHBOARD_ALLOWED_HOSTS"):
        load_settings()


def test_sessions_expire_and_the_oldest_make_room() -> None:
    now = [0.0]
    sessions = Sessions(lifetime_s=10.0, clock=lambda: now[0])
    token, csrf = sessions.open()
    assert sessions.csrf(token) == csrf and sessions.csrf("forged") is None and sessions.csrf(None) is None
    now[0] = 10.5
    assert sessions.csrf(token) is None
    tokens = []
    for _ in range(70):
        now[0] += 0.01
        tokens.append(sessions.open()[0])
    assert sessions.csrf(tokens[0]) is None and sessions.csrf(tokens[-1]) is not None
    sessions.close(tokens[-1])
    assert sessions.csrf(tokens[-1]) is None


def run_app(policy: AccessPolicy, scenario: Callable[[TestClient, ListTrades], Awaitable[None]]) -> ListTrades:
    rows = ListTrades({"decisions": [], "orders": [], "positions": []}, [(TRADER, "BTCUSDT")])

    async def main() -> None:
        async with TestClient(TestServer(build_app(DashboardReader(rows, rows), access=policy))) as client:
            await scenario(client, rows)

    asyncio.run(main())
    return rows


def test_a_request_for_another_host_name_is_refused_whatever_the_route() -> None:
    async def scenario(client: TestClient, rows: ListTrades) -> None:
        for path in ("/", "/api/overview", "/api/session", "/static/app.js"):
            refused = await client.get(path, headers={"Host": "evil.example:8050"})
            assert refused.status == 403 and "KLINESTREAM_DASHBOARD_ALLOWED_HOSTS" in await refused.text()
            assert refused.headers["X-Frame-Options"] == "DENY"
        posted = await client.post("/api/login", json={"password": PASSWORD}, headers={"Host": "evil.example"})
        assert posted.status == 403 and "Set-Cookie" not in posted.headers
        assert (await client.get("/api/overview", headers={"Host": "dash.example:8050"})).status == 200
        assert (await client.get("/api/overview")).status == 403, "127.0.0.1 is not in this allow-list"
        page = await client.get("/", headers={"Host": "dash.example"})
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]

    run_app(AccessPolicy(frozenset({"dash.example"}), SecretStr(PASSWORD)), scenario)


def _csrf(answer: dict[str, Any]) -> dict[str, str]:
    return {"X-CSRF-Token": str(answer["csrf"])}


def test_the_kill_switch_needs_a_login_and_its_csrf_token() -> None:
    stop = {"active": True, "trader_id": TRADER, "reason": "unit"}

    async def scenario(client: TestClient, rows: ListTrades) -> None:
        assert (await client.post("/api/kill-switch", json=stop)).status == 401
        assert (await client.post("/api/login", json={"password": "nope"})).status == 401
        assert (await client.post("/api/login", data="password=" + PASSWORD)).status == 415
        login = await client.post("/api/login", json={"password": PASSWORD})
        cookie = login.headers["Set-Cookie"]
        assert login.status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        headers = _csrf(await login.json())
        assert (await (await client.get("/api/session")).json())["logged_in"] is True
        assert (await client.post("/api/kill-switch", json=stop)).status == 403
        cross = {**headers, "Origin": "https://evil.example"}
        assert (await client.post("/api/kill-switch", json=stop, headers=cross)).status == 403
        assert (await client.post("/api/kill-switch", json={"active": "yes"}, headers=headers)).status == 400
        assert rows.switches == {}
        done = await client.post("/api/kill-switch", json=stop, headers={**headers, "Origin": "http://127.0.0.1"})
        assert done.status == 200 and (await done.json())["kill_switch"] is True and rows.switches == {TRADER: True}
        everyone = await client.post("/api/kill-switch", json={"active": True, "trader_id": None}, headers=headers)
        assert (await everyone.json())["kill_switch"] is True and rows.switches[None] is True
        assert (await client.post("/api/logout", json={}, headers=headers)).status == 200
        assert (await client.post("/api/kill-switch", json=stop, headers=headers)).status == 401

    run_app(AccessPolicy.for_server("127.0.0.1", SecretStr(PASSWORD)), scenario)


def test_without_a_password_the_controls_are_off_and_wrong_passwords_close_the_login() -> None:
    async def no_password(client: TestClient, rows: ListTrades) -> None:
        assert (await (await client.get("/api/session")).json())["login_enabled"] is False
        assert (await client.post("/api/login", json={"password": PASSWORD})).status == 403
        refused = await client.post("/api/kill-switch", json={"active": True})
        assert refused.status == 403 and "KLINESTREAM_DASHBOARD_PASSWORD" in await refused.text()

    run_app(AccessPolicy.for_server("127.0.0.1"), no_password)

    async def guessing(client: TestClient, rows: ListTrades) -> None:
        for _ in range(MAX_FAILURES):
            assert (await client.post("/api/login", json={"password": "guess"})).status == 401
        assert (await client.post("/api/login", json={"password": PASSWORD})).status == 429

    run_app(AccessPolicy.for_server("127.0.0.1", SecretStr(PASSWORD)), guessing)


def test_beyond_loopback_the_reads_need_the_login_too() -> None:
    async def scenario(client: TestClient, rows: ListTrades) -> None:
        assert (await client.get("/api/overview")).status == 401
        assert (await client.get("/")).status == 200, "the page itself (no data) opens, to show the login"
        session = await (await client.get("/api/session")).json()
        assert session["reads_need_login"] is True and session["logged_in"] is False
        assert (await client.post("/api/login", json={"password": PASSWORD})).status == 200
        assert (await client.get("/api/overview")).status == 200

    run_app(AccessPolicy.for_server("0.0.0.0", SecretStr(PASSWORD), ("127.0.0.1",)), scenario)
