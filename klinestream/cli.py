"""The ``klinestream`` console script.

Each area of the platform keeps its commands in ``klinestream/commands/<area>.py`` with a
``register(app)`` function; this module only assembles them, so importing it stays cheap (heavy
imports happen inside the command bodies). Failures exit non-zero with a one-line reason.

Conventions every command follows (README "Working with it"): ``--version`` and shell completion
(``--install-completion``) on the root; choices are ``Literal``/``Enum`` types, so ``--help`` and completion
list them and a wrong one exits 2 naming the allowed values; one option name per concept (``--range``,
``--train``, ``--test`` as ``START:END``; ``--data-dir`` for kline files; ``--model`` for a model);
``--json`` where a command reports figures; ``--home`` (or ``KLINESTREAM_HOME``) for the local state.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup

import klinestream
from models.errors import KlinestreamError

#: Modules under ``klinestream.commands`` whose ``register(app)`` adds commands.
COMMAND_MODULES: tuple[str, ...] = (
    "stack", "market", "live", "registry", "dqn", "walkforward", "tune", "demo", "config",
)  # fmt: skip


def _untyped_flags(params: list[Any]) -> list[Any]:
    """A flag takes no value: show no type beside it in ``--help``."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class KlinestreamGroup(TyperGroup):
    """The command groups of ``klinestream``.

    Typer's Rich help prints the type of every parameter in a column, flags included, so each flag (and
    ``--help``) showed ``<bool>``; its plain help leaves flags without a type. An empty metavar gives
    flags the same treatment in the Rich help, for the group's own options and its commands'.
    """

    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _untyped_flags(command.get_params(ctx))
        return command


def version() -> str:
    """The installed distribution's version (the package's own when it is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("klinestream")
    except metadata.PackageNotFoundError:
        return klinestream.__version__


app = typer.Typer(
    name="klinestream",
    cls=KlinestreamGroup,
    help="Reinforcement-learning traders on Binance klines: backfill, validate, train, promote, stream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"klinestream {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
    home: Path | None = typer.Option(
        None,
        "--home",
        help="Folder of local state (KLINESTREAM_HOME): stack data and logs, lake, models. Default: the "
        "checkout's var/ when run from a checkout, else ~/.local/share/klinestream.",
        show_default=False,
    ),
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    if home is not None:  # every settings object of this process, and the processes it starts, see it
        os.environ["KLINESTREAM_HOME"] = str(home.expanduser().resolve())
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # matplotlib logs "generated new fontManager" at INFO the first time it runs on a machine: library
    # chatter, not ours (it turned a fresh machine's one-line CLI errors into two lines)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    _mlflow_login()


def _mlflow_login() -> None:
    """Every command acts as MLflow's writer account (``stream`` switches to the read-only stream account);
    invalid settings are left for the command itself to report."""
    from adapters.mlflow.accounts import use_account
    from models.credentials import MlflowAccount
    from models.errors import SettingsError
    from models.settings import load_settings

    try:
        use_account(load_settings(), MlflowAccount.WRITER)
    except SettingsError:
        return


def _register_all() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"klinestream.commands.{name}")
        module.register(app)


_register_all()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def one_line(exc: ClickException) -> str:
    """Click's message on one line, without the "Value error, " that Typer's choice check puts in it."""
    message = " ".join(exc.format_message().split())
    return message.replace(": Value error, ", ": ")


def main() -> None:
    """Entry point: run the app; bad arguments and Klinestream errors become one line and a non-zero exit."""
    try:
        result = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else "see --help")
        sys.exit(2)
    except ClickException as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(130)
    except KlinestreamError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        typer.echo(f"error: {first}", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
