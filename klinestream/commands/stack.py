"""``klinestream stack up|down|status`` — placeholder module replaced by the stack work."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    stack = typer.Typer(help="Start, stop and inspect the local service stack.", no_args_is_help=True)
    app.add_typer(stack, name="stack")
