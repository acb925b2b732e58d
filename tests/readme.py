"""The README's commands, read from README.md itself, so the tests that run them cannot drift from it.

A command is one line of a fenced ```bash block, without its trailing ``# comment``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"

_FENCE = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
_COMMENT = re.compile(r"\s+#.*$")


def _commands(block: str) -> list[str]:
    lines = (_COMMENT.sub("", line).strip() for line in block.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def bash_blocks(text: str | None = None) -> list[list[str]]:
    """Every ```bash block of the README, as its list of commands, in order."""
    return [_commands(m.group(1)) for m in _FENCE.finditer(README.read_text() if text is None else text)]


def section_blocks(heading: str, text: str | None = None) -> list[list[str]]:
    """The ```bash blocks under the ``## heading`` (up to the next ``## `` heading)."""
    text = README.read_text() if text is None else text
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if match is None:
        raise LookupError(f"README.md has no section '## {heading}'")
    return bash_blocks(match.group(1))


def all_commands(text: str | None = None) -> list[str]:
    """Every command of every ```bash block, in README order."""
    return [command for block in bash_blocks(text) for command in block]


def klinestream_command(verb: str, heading: str = "Working with it") -> list[str]:
    """The argv of the README's ``klinestream <verb> ...`` line in ``heading`` (exactly one must exist)."""
    found = [c for block in section_blocks(heading) for c in block if c.split()[:2] == ["klinestream", verb]]
    if len(found) != 1:
        raise LookupError(f"README section '{heading}' has {len(found)} 'klinestream {verb}' lines, expected 1")
    return shlex.split(found[0])
