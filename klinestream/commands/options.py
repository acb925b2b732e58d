"""What the commands share: the choices of their options, one name and one syntax per concept, JSON output.

- Choices are ``Literal`` (one value) or ``StrEnum`` (lists) types, so ``--help`` and shell completion list
  them and Typer rejects anything else with exit code 2 and the allowed values. The lists that live in heavy
  modules are repeated here so that importing the CLI stays cheap; tests/unit/test_cli_conventions.py checks
  that each one equals its source.
- Time ranges are one string ``START:END`` (``--range``, ``--train``, ``--test``); kline folders are
  ``--data-dir``; a model is ``--model``. Old spellings stay as hidden options that still work and say
  which option replaced them (:func:`deprecated`).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import typer

from models.config import Device, RewardKind, Variant

if TYPE_CHECKING:
    from models.time_range import TimeRange

__all__ = ["Device", "RewardKind", "Variant"]

T = TypeVar("T")

SourceKind = Literal["binance", "simulator", "files"]
"""Where ``backfill`` fetches klines (``pipelines.backfill.SOURCES``)."""
FeatureSetName = Literal["reference", "indicators", "extended"]
"""The feature sets (``models.feature_sets.FEATURE_SETS``)."""
KillSwitchState = Literal["on", "off", "status"]
WindowKind = Literal["sliding", "expanding"]
"""Walk-forward training windows (``pipelines.walkforward.folds.WindowKind``)."""
TuneAggregate = Literal["mean", "lower_quartile"]
"""How a study's fold scores become its objective (``pipelines.tune.config.Aggregate``)."""


class ServiceName(StrEnum):
    """The local services (``klinestream.stack.services.SERVICE_NAMES``, in start order), and ``live``: the
    supervised live processes (``klinestream.stack.services.LiveService``)."""

    kafka = "kafka"
    cassandra = "cassandra"
    mlflow = "mlflow"
    airflow = "airflow"
    live = "live"


class JvmBundle(StrEnum):
    """The jar bundles ``stack install`` resolves (``klinestream.stack.jvm.BUNDLES``)."""

    kafka = "kafka"
    cassandra = "cassandra"
    spark_kafka = "spark-kafka"


RANGE_METAVAR = "START:END"
RANGE_HELP = "UTC range START:END, end exclusive (YYYY-MM-DD or YYYY-MM-DDTHH:MM), e.g. 2021-01-01:2022-01-01."
DATA_DIR_HELP = "Folder of kline files: <SYMBOL>.csv or Binance Vision dumps (default KLINESTREAM_DATA_DIR)."
JSON_HELP = "Print JSON on stdout (the same figures as the text)."


def json_option() -> Any:
    return typer.Option(False, "--json", help=JSON_HELP)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (paths, dates and enums as strings)."""
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def parse_range_option(value: str, option: str) -> TimeRange:
    """``START:END`` → :class:`~models.time_range.TimeRange`; a bad range names its option (exit 2)."""
    from models.time_range import RangeError, parse_range

    try:
        return parse_range(value)
    except RangeError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def deprecated(old: str, new: str) -> None:
    """One line on stderr: ``old`` still works, ``new`` replaces it."""
    typer.echo(f"warning: {old} is deprecated, use {new}", err=True)


def range_or_bounds(value: str | None, start: str | None, end: str | None, option: str = "--range") -> TimeRange:
    """The ``--range START:END`` option, or the deprecated ``--start``/``--end`` pair it replaced."""
    from models.time_range import RangeError, TimeRange

    if value is not None:
        if start is not None or end is not None:
            raise typer.BadParameter("give --range START:END, not also --start/--end", param_hint=option)
        return parse_range_option(value, option)
    if start is None or end is None:
        raise typer.BadParameter(f"missing {option} START:END, e.g. 2023-01-01:2023-02-01", param_hint=option)
    deprecated("--start/--end", f"{option} START:END")
    try:
        return TimeRange.from_bounds(start, end)
    except RangeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--start/--end") from None


def renamed(new: T | None, old: T | None, old_name: str, new_name: str) -> T | None:
    """The value of option ``new_name``, or of the hidden ``old_name`` it replaced (with a warning)."""
    if old is None:
        return new
    if new is not None:
        raise typer.BadParameter(f"give {new_name}, not also {old_name}", param_hint=new_name)
    deprecated(old_name, new_name)
    return old


def existing_folder(folder: Path | None, option: str = "--data-dir") -> Path | None:
    """``folder`` when it is a folder (or None); otherwise a one-line error naming ``option``."""
    if folder is not None and not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder", param_hint=option)
    return folder
