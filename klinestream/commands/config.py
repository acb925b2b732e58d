"""``klinestream config show``: the effective settings, where they come from, secrets masked."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import typer

from klinestream.commands.options import json_option, print_json

if TYPE_CHECKING:
    from models.settings import Location, Settings


def _home_origin(settings: Settings, location: Location) -> str:
    if os.environ.get("KLINESTREAM_HOME", "").strip():
        return "KLINESTREAM_HOME (environment or --home)"
    if settings.home != location.default_home.resolve():
        return f"KLINESTREAM_HOME in {location.env_file}"
    return location.origin


def effective_config(settings: Settings, location: Location) -> dict[str, Any]:
    """What ``config show`` prints: the ``.env`` file, the home and where it came from, the folders derived
    from it, and every setting by its variable (``SecretStr`` values masked by pydantic as ``**********``)."""
    from models.settings import env_name

    values = settings.model_dump(mode="json")
    return {
        "env_file": str(location.env_file),
        "env_file_exists": location.env_file.is_file(),
        "home": str(settings.home),
        "home_from": _home_origin(settings, location),
        "folders": {"lake": str(settings.lake_root), "stack": str(settings.stack_dir), "jvm": str(settings.jvm_dir)},
        "settings": {env_name(name): values[name] for name in type(settings).model_fields},
    }


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if value == "":
        return "(empty)"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "(none)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def show(as_json: bool = json_option()) -> None:
    """Print the effective settings (environment, then .env, then defaults) with secrets masked."""
    from rich.console import Console
    from rich.table import Table

    from models.settings import load_settings, locate

    location = locate()
    config = effective_config(load_settings(), location)
    if as_json:
        print_json(config)
        return
    console = Console(soft_wrap=True, highlight=False)
    read = "read" if config["env_file_exists"] else "absent"
    console.print(f".env file: {config['env_file']} ({read})", markup=False)
    console.print(f"home: {config['home']} (from {config['home_from']})", markup=False)
    for name, folder in config["folders"].items():
        console.print(f"{name}: {folder}", markup=False)
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("variable", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in config["settings"].items():
        table.add_row(name, _shown(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    config = typer.Typer(
        cls=app.info.cls, help="The effective settings (KLINESTREAM_* variables and .env).", no_args_is_help=True
    )
    config.command("show")(show)
    app.add_typer(config, name="config")
