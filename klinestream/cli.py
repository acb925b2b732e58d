"""The ``klinestream`` console script.

Each area of the platform keeps its commands in ``klinestream/commands/<area>.py`` with a
``register(app)`` function; this module only assembles them, so importing it stays cheap (heavy
imports happen inside the command bodies). Failures exit non-zero with a one-line reason.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from models.errors import KlinestreamError

#: Modules under ``klinestream.commands`` whose ``register(app)`` adds commands.
COMMAND_MODULES: tuple[str, ...] = ("stack", "market", "live", "registry", "dqn", "walkforward", "demo")

app = typer.Typer(
    name="klinestream",
    help="Reinforcement-learning traders on Binance klines: backfill, validate, train, promote, stream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
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


def main() -> None:
    """Entry point: run the app; bad arguments and Klinestream errors become one line and a non-zero exit."""
    try:
        result = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else "see --help")
        sys.exit(2)
    except ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
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
