"""Telegram at the edge: alerts sent through python-telegram-bot (:mod:`.sink`), and the redaction that keeps
the bot token out of every log line (:mod:`.redact`). The bot that answers commands is klinestream/bot/."""
