"""Time ranges of klines: half-open ``[start_ms, end_ms)`` of open_time, in UTC epoch milliseconds.

Ranges are parsed once, at the edge (CLI options, DAG params, MLflow tags), into :class:`TimeRange`;
everything inside the pipeline passes the object. Two spellings are read:

- :func:`parse_range` — one string ``START:END`` (``2021-01-01:2022-01-01``, or with times
  ``2021-01-01T00:00:2021-02-01T00:00``), as every range option of the CLI (``--range``, ``--train``,
  ``--test``) and the DAG params;
- :meth:`TimeRange.from_bounds` — two strings, as the deprecated ``--start`` / ``--end`` options.

Dates without an offset are UTC; the end is excluded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from models.errors import PermanentError


class RangeError(PermanentError):
    """A date range is malformed or selects no usable hours."""


@dataclass(frozen=True)
class TimeRange:
    """Half-open range of open_time ``[start_ms, end_ms)``."""

    start_ms: int
    end_ms: int
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.start_ms}:{self.end_ms}"

    @classmethod
    def from_bounds(cls, start: str, end: str) -> TimeRange:
        """``("2021-01-01", "2021-02-01T06:00")`` → :class:`TimeRange` (its text is ``START:END``)."""
        start_ms, end_ms = parse_time(start, "start"), parse_time(end, "end")
        if end_ms <= start_ms:
            raise RangeError(f"end {end} is not after start {start}")
        return cls(start_ms, end_ms, f"{start.strip()}:{end.strip()}")


def parse_time(text: str, what: str = "time") -> int:
    """``2021-01-01`` / ``2021-01-01T05:00`` (UTC unless an offset is given) → epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RangeError(f"{what} {text!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM (ISO, UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_range(text: str) -> TimeRange:
    """``"2021-01-01:2022-01-01"`` (UTC, end exclusive) → :class:`TimeRange`."""
    if text.count(":") != 1 and "T" not in text:
        raise RangeError(f"range {text!r} must look like START:END, e.g. 2021-01-01:2022-01-01")
    start_text, _, end_text = text.partition(":") if "T" not in text else _split_iso_range(text)
    start, end = parse_time(start_text, "start"), parse_time(end_text, "end")
    if end <= start:
        raise RangeError(f"range {text!r} ends before it starts")
    return TimeRange(start, end, text)


def _split_iso_range(text: str) -> tuple[str, str, str]:
    # with times ("2021-01-01T00:00:2021-02-01T00:00") split at the ':' that precedes a date
    for i, char in enumerate(text):
        if char == ":" and len(text) > i + 5 and text[i + 1 : i + 5].isdigit() and text[i + 5 : i + 6] == "-":
            return text[:i], ":", text[i + 1 :]
    raise RangeError(f"range {text!r} must look like START:END")
