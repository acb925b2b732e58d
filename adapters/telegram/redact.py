"""Keep secrets out of every log line of the process, the libraries' own included.

python-telegram-bot logs the Bot API URL, token included, at DEBUG ("Set Bot API URL: …/bot<token>"), httpx
logs every request URL at INFO ("HTTP Request: POST …/bot<token>/sendMessage"), and ``InvalidToken`` carries
the token in its message. Filters on a logger do not apply to its children's records, and handlers come and
go (pytest adds its own), so the redaction sits where every record is made: a log record factory wrapping the
current one replaces each registered secret in the formatted message and in the traceback text.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

REDACTED = "[REDACTED]"
_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False
_formatter = logging.Formatter()


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``[REDACTED]``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_in_logs(*secrets: str) -> None:
    """Register ``secrets`` (empty ones are ignored) and make sure the record factory is installed."""
    global _installed
    with _lock:
        _secrets.update(s for s in secrets if s)
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _secrets:
                _scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: logging reports it itself when it formats the record
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None:
        text = _formatter.formatException(record.exc_info)
        if redact(text) != text or redact(str(record.exc_info[1])) != str(record.exc_info[1]):
            record.exc_text = redact(text)
            record.exc_info = None
