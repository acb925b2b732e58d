"""A local stand-in for the Telegram Bot API, as the exchange simulator stands in for Binance.

A real HTTP server (aiohttp) answering ``/bot<token>/<method>`` the way ``api.telegram.org`` does — JSON
``{"ok": true, "result": …}``, or ``{"ok": false, "error_code": …, "description": …}`` — for the methods the
platform uses: ``getMe``, ``deleteWebhook``, ``getUpdates`` (long polling: ``offset`` confirms every update
below it, ``timeout`` holds the request open until an update arrives), ``sendMessage``,
``editMessageText``, ``answerCallbackQuery``, ``setMyCommands``. Parameters are read from the query string
and from a form or JSON body, as Telegram accepts them. A wrong token gets 401 Unauthorized.

python-telegram-bot is pointed at it by base URL (``KLINESTREAM_TELEGRAM_API_URL``). A test plays the user:
:meth:`TelegramStandIn.send_user_message` and :meth:`press_button` queue updates for ``getUpdates``, and
:attr:`sent` / :attr:`answered` hold what the bot did (also over HTTP: ``POST /_standin/messages``,
``POST /_standin/callbacks``, ``GET /_standin/sent``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

from aiohttp import web

from adapters.loop_thread import LoopThread, start_site

log = logging.getLogger(__name__)

MAX_POLL_SECONDS = 50
BOT_ID = 7_000_000_001


class BotApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code, self.description = code, description


def _parse_value(value: Any) -> Any:
    """Telegram's form encoding: structured values (``reply_markup``…) are JSON strings."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _chat(chat_id: int) -> dict[str, Any]:
    return {"id": chat_id, "type": "private" if chat_id > 0 else "group", "first_name": "Tester"}


def _user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": "Tester"}


class TelegramStandIn:
    """The Bot API of one bot (``token``) on ``host:port`` (0 = any free port)."""

    def __init__(self, token: str, host: str = "127.0.0.1", port: int = 0, username: str = "klinestream_bot") -> None:
        self.token, self.host, self.port, self.username = token, host, port, username
        self.sent: list[dict[str, Any]] = []
        """Every message the bot sent or edited: ``{"method", "chat_id", "text", "reply_markup", "message_id"}``."""
        self.answered: list[dict[str, Any]] = []
        """Every ``answerCallbackQuery``: ``{"callback_query_id", "text"}``."""
        self.requests: list[str] = []
        self._updates: list[dict[str, Any]] = []
        self._next_update = 1
        self._next_message = 1
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._loop_thread = LoopThread("telegram-stand-in")

    # --- life cycle ------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """What to pass as the Bot API root (``KLINESTREAM_TELEGRAM_API_URL``)."""
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_post("/_standin/messages", self._inject_message)
        app.router.add_post("/_standin/callbacks", self._inject_callback)
        app.router.add_get("/_standin/sent", self._list_sent)
        return app

    async def start(self) -> None:
        self._runner, self.port = await start_site(self.app(), self.host, self.port)
        log.info("telegram stand-in listening on %s", self.api_url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __enter__(self) -> TelegramStandIn:
        self._loop_thread.start(self.start, self.stop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop_thread.stop()

    # --- the user's side (tests) -----------------------------------------------------------------
    def send_user_message(self, chat_id: int, text: str, user_id: int | None = None) -> int:
        """A user writes ``text`` in ``chat_id``; returns the update id. Commands get their entity."""
        message = self._message(chat_id, text, _user(user_id or chat_id))
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self._queue_update({"message": message})

    def press_button(self, chat_id: int, data: str, message_id: int | None = None, user_id: int | None = None) -> int:
        """A user presses the inline button ``data`` under the bot's message ``message_id`` (default: the bot's
        last message in that chat carrying a keyboard); returns the update id."""
        with self._lock:
            keyboards = [m for m in self.sent if m["chat_id"] == chat_id and m.get("reply_markup")]
        target = next((m for m in keyboards if m["message_id"] == message_id), None) if message_id else None
        target = target or (keyboards[-1] if keyboards else {"message_id": 0, "text": ""})
        message = self._message(chat_id, target["text"], {"id": BOT_ID, "is_bot": True, "first_name": "bot"})
        message["message_id"] = target["message_id"]
        with self._lock:
            query_id = f"cq{self._next_update}"
        query = {"id": query_id, "from": _user(user_id or chat_id), "chat_instance": str(chat_id), "data": data,
                 "message": message}  # fmt: skip
        return self._queue_update({"callback_query": query})

    def messages_to(self, chat_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.sent if m["chat_id"] == chat_id]

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> None:
        """Wait until ``predicate(self)`` is true (the bot answers from its own thread)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not do it within {timeout} s; sent: {self.sent}")
            time.sleep(0.05)

    def _message(self, chat_id: int, text: str, sender: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            message_id = self._next_message
            self._next_message += 1
        return {"message_id": message_id, "date": int(time.time()), "chat": _chat(chat_id), "from": sender,
                "text": text}  # fmt: skip

    def _queue_update(self, body: dict[str, Any]) -> int:
        with self._lock:
            update_id = self._next_update
            self._next_update += 1
            self._updates.append({"update_id": update_id, **body})
        return update_id

    # --- the Bot API -----------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        params = {k: _parse_value(v) for k, v in params.items()}
        self.requests.append(method)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        try:
            result = await handler(params)
        except BotApiError as exc:
            body = {"ok": False, "error_code": exc.code, "description": exc.description}
            return web.json_response(body, status=exc.code)
        return web.json_response({"ok": True, "result": result})

    async def _m_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Klinestream", "username": self.username,
                "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}  # fmt: skip

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> bool:
        return True

    async def _m_setMyCommands(self, params: dict[str, Any]) -> bool:
        return True

    async def _m_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        timeout = max(0.0, min(float(params.get("timeout") or 0), MAX_POLL_SECONDS))
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if offset:  # confirms every update below the offset: they are never sent again
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = self._updates[:limit]
            if ready or time.monotonic() >= deadline:
                return ready
            await asyncio.sleep(0.05)

    def _chat_id(self, params: dict[str, Any]) -> int:
        try:
            return int(params["chat_id"])
        except (KeyError, ValueError):
            raise BotApiError(400, "Bad Request: chat not found") from None

    async def _m_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        text = str(params.get("text") or "")
        if not text.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        message = self._message(chat_id, text, {"id": BOT_ID, "is_bot": True, "first_name": "Klinestream"})
        markup = params.get("reply_markup")
        if markup:
            message["reply_markup"] = markup
        with self._lock:
            self.sent.append({"method": "sendMessage", "chat_id": chat_id, "text": text, "reply_markup": markup,
                              "message_id": message["message_id"]})  # fmt: skip
        return message

    async def _m_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        message_id = int(params.get("message_id") or 0)
        text = str(params.get("text") or "")
        with self._lock:
            self.sent.append({"method": "editMessageText", "chat_id": chat_id, "text": text,
                              "reply_markup": params.get("reply_markup"), "message_id": message_id})  # fmt: skip
        message = self._message(chat_id, text, {"id": BOT_ID, "is_bot": True, "first_name": "Klinestream"})
        message["message_id"] = message_id
        return message

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        if not params.get("callback_query_id"):
            raise BotApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        with self._lock:
            self.answered.append({"callback_query_id": params["callback_query_id"], "text": params.get("text")})
        return True

    # --- HTTP control (for a bot in another process) ---------------------------------------------
    async def _inject_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        update_id = self.send_user_message(int(body["chat_id"]), str(body["text"]), body.get("user_id"))
        return web.json_response({"update_id": update_id})

    async def _inject_callback(self, request: web.Request) -> web.Response:
        body = await request.json()
        update_id = self.press_button(int(body["chat_id"]), str(body["data"]), body.get("message_id"))
        return web.json_response({"update_id": update_id})

    async def _list_sent(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response({"sent": list(self.sent), "answered": list(self.answered)})
