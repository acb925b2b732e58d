"""The Telegram alert sink and bot against the local Bot API stand-in (simulator/telegram.py), with the real
python-telegram-bot pointed at it by base URL; every log record captured at DEBUG is checked for the token."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests

from adapters.telegram.sink import TelegramAlertSink
from klinestream.bot.app import BotThread, KlinestreamBot
from models.alerts import Alert
from simulator.telegram import TelegramStandIn

TOKEN = "424242:AAH-unit-test-token-never-in-a-log-0123456789"
ALLOWED, STRANGER = 1001, 2002


class FakeBackend:
    """The bot's backend without services (a unit test's fake); records kill-switch changes."""

    def __init__(self) -> None:
        self.kill_switch: list[tuple[bool, str]] = []

    def status(self) -> str:
        return "status: 1 trader"

    def profit(self) -> str:
        return "profit: +1.00"

    def daily(self) -> str:
        return "daily: -"

    def champion(self) -> str:
        return "champion: v3"

    def set_kill_switch(self, active: bool, reason: str) -> None:
        self.kill_switch.append((active, reason))


@pytest.fixture
def api(caplog: pytest.LogCaptureFixture) -> Iterator[TelegramStandIn]:
    caplog.set_level(logging.DEBUG)
    with TelegramStandIn(TOKEN) as stand_in:
        yield stand_in
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert TOKEN not in text and TOKEN not in caplog.text, "the bot token appeared in a log record"


@pytest.fixture
def bot(api: TelegramStandIn) -> Iterator[tuple[BotThread, FakeBackend]]:
    backend = FakeBackend()
    thread = BotThread(KlinestreamBot(backend, (ALLOWED,)).application(TOKEN, api.api_url)).start()
    try:
        yield thread, backend
    finally:
        thread.stop()


def test_the_stand_in_answers_like_the_bot_api(api: TelegramStandIn) -> None:
    base = f"{api.api_url}/bot{TOKEN}"
    assert requests.get(f"{base}/getMe", timeout=5).json()["result"]["is_bot"] is True
    assert requests.get(f"{api.api_url}/botWRONG/getMe", timeout=5).json() == {
        "ok": False, "error_code": 401, "description": "Unauthorized"}  # fmt: skip
    first = api.send_user_message(ALLOWED, "hello")
    second = api.send_user_message(ALLOWED, "/status")
    updates = requests.post(f"{base}/getUpdates", data={"offset": 0, "timeout": 0}, timeout=5).json()["result"]
    assert [u["update_id"] for u in updates] == [first, second]
    assert updates[1]["message"]["entities"][0]["type"] == "bot_command"
    left = requests.post(f"{base}/getUpdates", data={"offset": second, "timeout": 0}, timeout=5).json()["result"]
    assert [u["update_id"] for u in left] == [second]  # the offset confirmed the first one
    sent = requests.post(f"{base}/sendMessage", data={"chat_id": ALLOWED, "text": "hi"}, timeout=5).json()
    assert sent["ok"] and sent["result"]["chat"]["id"] == ALLOWED and api.messages_to(ALLOWED)[0]["text"] == "hi"


def test_an_alert_key_is_sent_once_to_each_chat(api: TelegramStandIn) -> None:
    sink = TelegramAlertSink(TOKEN, [ALLOWED], api.api_url)
    alert = Alert("kill_switch", "warning", "kill switch ON for paper-BTCUSDT", "kill_switch:paper:on:1")
    for _ in range(3):
        sink.emit(alert)
    sink.emit(Alert("kill_switch", "info", "kill switch off", "kill_switch:paper:off:2"))
    sink.close()
    texts = [m["text"] for m in api.messages_to(ALLOWED)]
    assert len(texts) == 2 and "kill switch ON for paper-BTCUSDT" in texts[0] and "off" in texts[1]


def test_commands_answer_the_allowed_chat(api: TelegramStandIn, bot: tuple[BotThread, FakeBackend]) -> None:
    for command, answer in (("/status", "status: 1 trader"), ("/profit", "profit: +1.00"), ("/champion", "v3")):
        api.send_user_message(ALLOWED, command)
        api.wait_for(lambda a, answer=answer: any(answer in m["text"] for m in a.messages_to(ALLOWED)))


def test_kill_asks_first_and_sets_the_switch_only_after_the_confirmation(
    api: TelegramStandIn, bot: tuple[BotThread, FakeBackend]
) -> None:
    _, backend = bot
    api.send_user_message(ALLOWED, "/kill")
    api.wait_for(lambda a: any(m.get("reply_markup") for m in a.messages_to(ALLOWED)))
    assert backend.kill_switch == []  # asked, not done
    buttons = api.messages_to(ALLOWED)[-1]["reply_markup"]["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == ["kill:yes", "kill:no"]
    api.press_button(ALLOWED, "kill:yes")
    api.wait_for(lambda a: a.answered and backend.kill_switch)
    assert backend.kill_switch[0][0] is True and f"chat {ALLOWED}" in backend.kill_switch[0][1]
    api.wait_for(lambda a: any("Kill switch ON" in m["text"] for m in a.messages_to(ALLOWED)))
    api.send_user_message(ALLOWED, "/resume")
    api.wait_for(lambda a: len([m for m in a.messages_to(ALLOWED) if m.get("reply_markup")]) == 2)
    api.press_button(ALLOWED, "resume:no")
    api.wait_for(lambda a: len(a.answered) == 2)
    assert len(backend.kill_switch) == 1  # cancelled: nothing changed


def test_another_chat_is_refused_and_changes_nothing(
    api: TelegramStandIn, bot: tuple[BotThread, FakeBackend], caplog: pytest.LogCaptureFixture
) -> None:
    _, backend = bot
    api.send_user_message(STRANGER, "/kill")
    api.send_user_message(STRANGER, "/status")
    api.press_button(STRANGER, "kill:yes")
    api.send_user_message(ALLOWED, "/status")  # processed after the stranger's updates
    api.wait_for(lambda a: a.messages_to(ALLOWED))
    api.wait_for(lambda a: a.answered)
    assert api.messages_to(STRANGER) == [] and backend.kill_switch == []
    assert api.answered[0]["text"] == "Not allowed."
    assert sum("refused" in r.getMessage() and str(STRANGER) in r.getMessage() for r in caplog.records) == 3
