"""The Telegram bot: ``/status``, ``/profit``, ``/daily``, ``/champion``, ``/kill`` and ``/resume``.

Built on python-telegram-bot's ``Application`` (long polling with ``getUpdates``), pointed at
``KLINESTREAM_TELEGRAM_API_URL`` (the real Bot API, or the local stand-in simulator/telegram.py in tests).

- Only the chats of ``KLINESTREAM_TELEGRAM_CHAT_IDS`` are answered. A command or a button press from any
  other chat is refused: logged at WARNING with the chat id, no answer, nothing changed.
- ``/kill`` and ``/resume`` ask first, with an inline keyboard; the press is answered through
  ``answerCallbackQuery`` and only then is the kill switch set — the same Cassandra control
  (adapters/cassandra/controls.py) as ``klinestream kill-switch on|off``, so a running trader stops sending
  orders within one micro-batch.
- The token never reaches the logs (adapters/telegram/redact.py).

The reads are bounded (the newest rows, the last days), and run off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from adapters.telegram.redact import redact_in_logs
from adapters.telegram.sink import bot_api_base

log = logging.getLogger(__name__)

COMMANDS = {
    "status": "traders: last decision, position, orders today, kill switch",
    "profit": "P&L against buy-and-hold and cash",
    "daily": "equity and change by UTC day",
    "champion": "the registry's champion, challenger and previous",
    "kill": "stop new orders of every trader (asks first)",
    "resume": "allow orders again (asks first)",
}
CONFIRM = {"kill": "Stop new orders of every trader? Decisions go on.", "resume": "Allow orders again?"}


class BotBackend(Protocol):
    """What the commands read and change (klinestream/bot/backend.py on Cassandra and MLflow)."""

    def status(self) -> str: ...
    def profit(self) -> str: ...
    def daily(self) -> str: ...
    def champion(self) -> str: ...
    def set_kill_switch(self, active: bool, reason: str) -> None: ...


def confirmation_keyboard(action: str) -> InlineKeyboardMarkup:
    label = "Yes, stop orders" if action == "kill" else "Yes, allow orders"
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=f"{action}:yes"),
                                  InlineKeyboardButton("Cancel", callback_data=f"{action}:no")]])  # fmt: skip


class KlinestreamBot:
    """The commands on ``backend`` for ``chat_ids``; :meth:`application` builds the python-telegram-bot app."""

    def __init__(self, backend: BotBackend, chat_ids: tuple[int, ...]) -> None:
        self.backend, self.chat_ids = backend, frozenset(chat_ids)

    def application(
        self, token: str, api_url: str, poll_timeout: int = 10
    ) -> Application[Any, Any, Any, Any, Any, Any]:
        redact_in_logs(token)
        app = (Application.builder().token(token).base_url(bot_api_base(api_url))
               .get_updates_read_timeout(poll_timeout + 5).build())  # fmt: skip
        allowed = filters.Chat(chat_id=list(self.chat_ids))
        for name, reply in (("status", self.backend.status), ("profit", self.backend.profit),
                            ("daily", self.backend.daily), ("champion", self.backend.champion)):  # fmt: skip
            app.add_handler(CommandHandler(name, self._answer(reply), filters=allowed))
        app.add_handler(CommandHandler(["start", "help"], self._help, filters=allowed))
        app.add_handler(CommandHandler(["kill", "resume"], self._ask, filters=allowed))
        app.add_handler(CallbackQueryHandler(self._confirmed, pattern=r"^(kill|resume):(yes|no)$"))
        app.add_handler(MessageHandler(~allowed, self._refuse))
        return app

    def _answer(self, reply: Callable[[], str]) -> Any:
        async def handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            assert update.effective_message is not None
            try:
                text = await asyncio.to_thread(reply)
            except Exception as exc:  # a service is away: say so in the chat instead of going silent
                log.warning("bot command failed: %s", exc)
                text = f"Could not answer: {type(exc).__name__}: {exc}"[:500]
            await update.effective_message.reply_text(text)

        return handler

    async def _help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("\n".join(f"/{c} - {what}" for c, what in COMMANDS.items()))

    async def _ask(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None
        action = message.text.split()[0].lstrip("/").split("@")[0]
        await message.reply_text(CONFIRM[action], reply_markup=confirmation_keyboard(action))

    async def _confirmed(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.data is not None
        chat = update.effective_chat
        if chat is None or chat.id not in self.chat_ids:
            log.warning("bot refused a button press from chat_id=%s (not in KLINESTREAM_TELEGRAM_CHAT_IDS)",
                        chat.id if chat else None)  # fmt: skip
            await query.answer("Not allowed.")
            return
        action, answer = query.data.split(":")
        if answer == "no":
            await query.answer("Cancelled.")
            await query.edit_message_text("Cancelled: nothing changed.")
            return
        user = update.effective_user
        reason = f"telegram /{action} by {user.id if user else '?'} in chat {chat.id}"
        try:
            await asyncio.to_thread(self.backend.set_kill_switch, action == "kill", reason)
        except Exception as exc:
            log.error("bot could not set the kill switch: %s", exc)
            await query.answer("Failed: the kill switch was NOT changed.", show_alert=True)
            return
        done = "Kill switch ON: new orders stopped." if action == "kill" else "Kill switch off: orders allowed."
        await query.answer(done)
        await query.edit_message_text(f"{done} ({reason})")
        log.warning("kill switch %s from telegram chat_id=%s", "on" if action == "kill" else "off", chat.id)

    async def _refuse(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        log.warning("bot refused a message from chat_id=%s (not in KLINESTREAM_TELEGRAM_CHAT_IDS)",
                    chat.id if chat else None)  # fmt: skip


class BotThread:
    """The bot polling on an event loop of its own thread (tests, or beside other work); ``stop()`` ends it."""

    def __init__(self, app: Application[Any, Any, Any, Any, Any, Any], poll_timeout: int = 1) -> None:
        self.app, self.poll_timeout = app, poll_timeout
        self._loop = asyncio.new_event_loop()
        self._ready = asyncio.Event()
        self._stopping: asyncio.Event | None = None
        self._thread: Any = None

    async def _main(self, started: Any) -> None:
        self._stopping = asyncio.Event()
        async with self.app:
            await self.app.start()
            assert self.app.updater is not None
            await self.app.updater.start_polling(poll_interval=0.0, timeout=self.poll_timeout)
            started.set()
            await self._stopping.wait()
            await self.app.updater.stop()
            await self.app.stop()

    def start(self, timeout: float = 20.0) -> BotThread:
        import threading

        started = threading.Event()
        self._thread = threading.Thread(target=lambda: self._loop.run_until_complete(self._main(started)),
                                        name="telegram-bot", daemon=True)  # fmt: skip
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError(f"the bot did not start polling within {timeout} s")
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)
