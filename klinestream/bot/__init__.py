"""The Telegram bot (``klinestream bot``): commands answered for the allowed chats, the kill switch with a
confirmation. Alerts are sent by every process through adapters/telegram/sink.py, not by the bot."""
