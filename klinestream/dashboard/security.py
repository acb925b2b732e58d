"""The dashboard's doors: a Host allow-list, a login for the controls, and POSTs that another site cannot forge.

- **Host allow-list** (DNS rebinding): the name in every request's ``Host`` header (without the port) must be
  in :attr:`AccessPolicy.allowed_hosts` — ``KLINESTREAM_DASHBOARD_ALLOWED_HOSTS``, by default the address the
  dashboard listens on plus ``localhost``, ``127.0.0.1`` and ``::1`` — else 403. A page on ``evil.example``
  whose name is rebound to 127.0.0.1 sends ``Host: evil.example``: it reads nothing and posts nothing.
- **Login**: ``POST /api/login {"password": ...}`` is compared in constant time with
  ``KLINESTREAM_DASHBOARD_PASSWORD``; a success sets a random session cookie (``HttpOnly``, ``SameSite=Strict``,
  ``Path=/``, ``Max-Age``) and returns the session's CSRF token. Sessions live in the process's memory (a
  restart logs everyone out). Five wrong passwords within a minute close the login for a minute (429).
- **POSTs**: JSON bodies only (a cross-site form cannot send one, and a cross-site ``fetch`` of JSON needs a CORS
  preflight the dashboard never answers), an ``Origin`` header, when sent, must name an allowed host, and the
  controls need the session cookie plus its CSRF token in ``X-CSRF-Token``.
- **Reads**: open while the dashboard listens on a loopback address; beyond loopback (``--host 0.0.0.0`` in a
  container) the ``/api/`` reads need the login too, and the dashboard refuses to start without a password.
- Every response carries a Content-Security-Policy (scripts, images and data from the dashboard itself — no
  inline script; styles may be inline because the chart library adds a ``<style>`` for its attribution logo — and
  no framing, so no click-jacking of the kill switch) and ``nosniff``; API answers are not cached.

:func:`add_access` installs all of it on an app; the routes it adds are ``/api/login``, ``/api/logout`` and
``/api/session``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from pydantic import SecretStr

from models.errors import SettingsError

log = logging.getLogger(__name__)

SESSION_COOKIE = "klinestream_session"
CSRF_HEADER = "X-CSRF-Token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
OPEN_API_PATHS = frozenset({"/api/login", "/api/logout", "/api/session"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FAILURES, FAILURE_WINDOW_S = 5, 60.0
MAX_SESSIONS = 64
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether a listening address reaches only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bound: str) -> frozenset[str]:
    """The loopback names, plus the address the dashboard listens on unless it is a wildcard."""
    bound = bound.strip("[]").lower()
    return LOOPBACK_NAMES | ({bound} if bound not in ("", "0.0.0.0", "::") else set())


def host_name(header: str | None) -> str | None:
    """The host name of a ``Host`` header, lower-case, without port or brackets; None when malformed."""
    if not header:
        return None
    text = header.strip().lower()
    if text.startswith("["):
        name, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
    else:
        name, _, port = text.partition(":")
        if port and not port.isdigit():
            return None
    return name.rstrip(".") or None


@dataclass(frozen=True)
class AccessPolicy:
    """Who may read and who may act (see the module doc)."""

    allowed_hosts: frozenset[str]
    password: SecretStr | None = None
    reads_need_login: bool = False
    session_seconds: float = 12 * 3600.0

    @classmethod
    def for_server(
        cls,
        bound: str,
        password: SecretStr | None = None,
        allowed_hosts: tuple[str, ...] = (),
        session_hours: float = 12.0,
    ) -> AccessPolicy:
        """The policy of a dashboard listening on ``bound``; refuses an open dashboard beyond loopback."""
        reads_need_login = not is_loopback(bound)
        if reads_need_login and password is None:
            raise SettingsError(
                f"the dashboard would listen on {bound}, beyond loopback, with no login: set "
                "KLINESTREAM_DASHBOARD_PASSWORD (or listen on 127.0.0.1)"
            )
        hosts = frozenset(allowed_hosts) if allowed_hosts else default_allowed_hosts(bound)
        return cls(hosts, password, reads_need_login, session_hours * 3600.0)


class Sessions:
    """Logged-in sessions: the SHA-256 of a random token → (CSRF token, expiry), in memory."""

    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_s, self.clock = lifetime_s, clock
        self._sessions: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def open(self) -> tuple[str, str]:
        """A new session: (cookie token, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._sessions = {k: v for k, v in self._sessions.items() if v[1] > now}
            while len(self._sessions) >= MAX_SESSIONS:  # the oldest first
                self._sessions.pop(min(self._sessions, key=lambda k: self._sessions[k][1]))
            self._sessions[self._key(token)] = (csrf, now + self.lifetime_s)
        return token, csrf

    def csrf(self, token: str | None) -> str | None:
        """The CSRF token of a live session, None when the token is unknown or expired."""
        if not token:
            return None
        with self._lock:
            found = self._sessions.get(self._key(token))
        return found[0] if found is not None and found[1] > self.clock() else None

    def close(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._sessions.pop(self._key(token), None)


class LoginThrottle:
    """Closes the login for a minute after five wrong passwords within a minute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    def closed(self) -> bool:
        now = self.clock()
        with self._lock:
            while self._failures and now - self._failures[0] > FAILURE_WINDOW_S:
                self._failures.popleft()
            return len(self._failures) >= MAX_FAILURES

    def failed(self) -> None:
        with self._lock:
            self._failures.append(self.clock())


POLICY_KEY = web.AppKey("access_policy", AccessPolicy)
SESSIONS_KEY = web.AppKey("sessions", Sessions)
THROTTLE_KEY = web.AppKey("login_throttle", LoginThrottle)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _refusal(request: web.Request, policy: AccessPolicy) -> web.Response | None:
    """Why this request is refused before it reaches a route (None: it goes on)."""
    name = host_name(request.headers.get(hdrs.HOST))
    if name is None or name not in policy.allowed_hosts:
        log.warning("dashboard refused host=%r path=%s (not in the allowed hosts)", name, request.path)
        return _error(403, f"host {name!r} is not allowed: add it to KLINESTREAM_DASHBOARD_ALLOWED_HOSTS")
    if request.method not in SAFE_METHODS:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and host_name(urlsplit(origin).netloc) not in policy.allowed_hosts:
            return _error(403, "cross-origin request refused")
        if request.content_type != "application/json":
            return _error(415, "send a JSON body (Content-Type: application/json)")
    path = request.path
    gated = policy.reads_need_login and path.startswith("/api/") and path not in OPEN_API_PATHS
    if gated and request.app[SESSIONS_KEY].csrf(request.cookies.get(SESSION_COOKIE)) is None:
        return _error(401, "log in first: this dashboard listens beyond loopback")
    return None


def _protect(response: web.StreamResponse, path: str) -> None:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def access_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The Host allow-list, the POST rules and the read gate, then the security headers."""
    refusal = _refusal(request, request.app[POLICY_KEY])
    if refusal is not None:
        _protect(refusal, request.path)
        return refusal
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _protect(exc, request.path)
        raise
    _protect(response, request.path)
    return response


def require_control(request: web.Request) -> None:
    """Raise 401 without a live session, 403 without its CSRF token in ``X-CSRF-Token``."""
    if request.app[POLICY_KEY].password is None:
        raise _http(web.HTTPForbidden, "the controls are off: set KLINESTREAM_DASHBOARD_PASSWORD to enable the login")
    csrf = request.app[SESSIONS_KEY].csrf(request.cookies.get(SESSION_COOKIE))
    if csrf is None:
        raise _http(web.HTTPUnauthorized, "log in to use the controls")
    if not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), csrf):
        raise _http(web.HTTPForbidden, f"missing or wrong {CSRF_HEADER} header")


def _http(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or 400."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise _http(web.HTTPBadRequest, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _http(web.HTTPBadRequest, "the body must be a JSON object")
    return body


async def login(request: web.Request) -> web.Response:
    policy, throttle = request.app[POLICY_KEY], request.app[THROTTLE_KEY]
    if policy.password is None:
        return _error(403, "no login: set KLINESTREAM_DASHBOARD_PASSWORD to enable it")
    if throttle.closed():
        return _error(429, "too many wrong passwords: try again in a minute")
    password = (await json_body(request)).get("password")
    expected = policy.password.get_secret_value().encode()
    if not isinstance(password, str) or not hmac.compare_digest(password.encode(), expected):
        throttle.failed()
        log.warning("dashboard login refused: wrong password")
        return _error(401, "wrong password")
    token, csrf = request.app[SESSIONS_KEY].open()
    response = web.json_response({"logged_in": True, "csrf": csrf})
    response.set_cookie(SESSION_COOKIE, token, max_age=int(policy.session_seconds), path="/", httponly=True,
                        samesite="Strict", secure=request.secure)  # fmt: skip
    log.info("dashboard login")
    return response


async def logout(request: web.Request) -> web.Response:
    require_control(request)
    request.app[SESSIONS_KEY].close(request.cookies.get(SESSION_COOKIE))
    response = web.json_response({"logged_in": False})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def session_state(request: web.Request) -> web.Response:
    """Whether a login exists and this browser holds one; its CSRF token (readable by this origin only)."""
    policy = request.app[POLICY_KEY]
    csrf = request.app[SESSIONS_KEY].csrf(request.cookies.get(SESSION_COOKIE))
    return web.json_response({"login_enabled": policy.password is not None, "logged_in": csrf is not None,
                              "csrf": csrf, "reads_need_login": policy.reads_need_login})  # fmt: skip


def add_access(app: web.Application, policy: AccessPolicy) -> None:
    """Install the policy on ``app``: its middleware and the login routes."""
    app[POLICY_KEY] = policy
    app[SESSIONS_KEY] = Sessions(policy.session_seconds)
    app[THROTTLE_KEY] = LoginThrottle()
    app.middlewares.append(access_guard)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/session", session_state)
