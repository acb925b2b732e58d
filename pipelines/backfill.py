"""Backfill: fetch → ``raw`` → validate → publish to ``validated``, for some symbols over ``[start, end)``.

The one implementation the ``klines_backfill`` DAG (one hour per run) and ``klinestream backfill`` (any
range) both call. Every write is keyed by the range, so reruns and overlapping ranges change nothing.
Publishing is per partition (symbol and UTC day): a day with a failing kline stays out of ``validated``
(what ``validated`` held for it before is left as it was); the other days are published. ("Promote" is
reserved for moving the champion alias of the model registry.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from adapters import lake
from models.errors import SettingsError, TemporaryError, ValidationFailed
from models.kline import klines_to_frame
from models.settings import Settings, env_name
from pipelines.validation import KlineValidator, ValidationResult, format_hour, load_known_outages

log = logging.getLogger(__name__)

SourceKind = Literal["binance", "simulator", "files"]
SOURCES: tuple[str, ...] = ("binance", "simulator", "files")
DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8900"
Progress = Callable[[str, int], None]  # (symbol, rows done since the last call)


@dataclass(frozen=True)
class KlineSource:
    """Where klines come from: Binance itself, a Binance-compatible base URL, or a folder of files."""

    kind: SourceKind
    base_url: str | None = None
    path: Path | None = None

    def describe(self) -> str:
        if self.kind == "files":
            return f"files in {self.path}"
        return f"{self.kind} at {self.base_url or 'https://api.binance.com'}"


def resolve_source(settings: Settings, kind: str | None = None, path: Path | str | None = None) -> KlineSource:
    """The source to use. Without ``kind``: the simulator/Binance-compatible URL if
    ``KLINESTREAM_BINANCE_BASE_URL`` is set, else files if ``KLINESTREAM_DATA_DIR`` is set, else Binance."""
    if kind is None:
        if settings.binance_base_url:
            return KlineSource("simulator", base_url=settings.binance_base_url)
        if settings.data_dir is not None:
            return KlineSource("files", path=settings.data_dir)
        return KlineSource("binance")
    if kind == "binance":
        return KlineSource("binance", base_url=settings.binance_base_url)
    if kind == "simulator":
        return KlineSource("simulator", base_url=settings.binance_base_url or DEFAULT_SIMULATOR_URL)
    if kind == "files":
        folder = Path(path) if path is not None else settings.data_dir
        if folder is None:
            raise SettingsError(f"--source files needs --data-dir DIR or {env_name('data_dir')}")
        if not folder.is_dir():
            raise SettingsError(
                f"kline folder {folder} does not exist; pass --data-dir DIR or set {env_name('data_dir')}"
            )
        return KlineSource("files", path=folder)
    raise SettingsError(f"unknown source {kind!r}; use one of {SOURCES}")


def fetch_from_source(
    source: KlineSource, symbol: str, start_ms: int, end_ms: int, progress: Progress | None = None
) -> pd.DataFrame:
    """One symbol's klines of ``[start_ms, end_ms)`` from ``source`` as a contract frame."""
    if source.kind == "files":
        from adapters.kline_files import read_kline_dir

        assert source.path is not None
        frame = read_kline_dir(source.path, symbol, start_ms, end_ms)
        if progress is not None:
            progress(symbol, len(frame))
        return frame
    from adapters.binance.rest import BinanceKlineClient

    client = BinanceKlineClient(source.base_url)
    on_page = (lambda n: progress(symbol, n)) if progress is not None else None
    return klines_to_frame(client.fetch_klines(symbol, start_ms, end_ms, on_page=on_page))


def ingest_raw(
    root: Path,
    source: KlineSource,
    symbols: Sequence[str],
    start_ms: int,
    end_ms: int,
    progress: Progress | None = None,
    require_complete: bool = False,
) -> dict[str, int]:
    """Fetch each symbol's range and make the ``raw`` zone hold exactly it; returns rows per symbol.

    ``require_complete``: raise TemporaryError when a source has not published every hour yet (known
    outages aside), so the caller's retry fetches again (the hourly DAG: Binance may lag a little).
    """
    rows = {}
    lagging = []
    for symbol in symbols:
        frame = fetch_from_source(source, symbol, start_ms, end_ms, progress)
        lake.write_range(root, "raw", frame, start_ms, end_ms, symbols=[symbol])
        rows[symbol] = len(frame)
        log.info("raw written symbol=%s rows=%d source=%s", symbol, len(frame), source.kind)
        if require_complete:
            missing = _unpublished_hours(frame, symbol, start_ms, end_ms)
            if missing:
                lagging.append(f"{symbol} {', '.join(format_hour(h) for h in missing[:3])}")
    if lagging:
        raise TemporaryError(
            f"{source.describe()} has not published these klines yet: {'; '.join(lagging)}; retry later"
        )
    return rows


def _unpublished_hours(frame: pd.DataFrame, symbol: str, start_ms: int, end_ms: int) -> list[int]:
    expected = set(lake.hour_range(start_ms, end_ms).tolist()) - load_known_outages().missing_hours(symbol)
    return sorted(expected - set(frame["open_time"].tolist()))


def _passing_runs(result: ValidationResult) -> list[tuple[int, int]]:
    """Sub-ranges of the result's range made of consecutive days that passed."""
    runs: list[tuple[int, int]] = []
    failed = result.failed_days
    for day in range(result.start_ms // lake.DAY_MS, (result.end_ms - 1) // lake.DAY_MS + 1):
        if lake.day_of(day * lake.DAY_MS) in failed:
            continue
        lo, hi = max(result.start_ms, day * lake.DAY_MS), min(result.end_ms, (day + 1) * lake.DAY_MS)
        if runs and runs[-1][1] == lo:
            runs[-1] = (runs[-1][0], hi)
        else:
            runs.append((lo, hi))
    return runs


def publish(
    root: Path,
    symbols: Sequence[str],
    start_ms: int,
    end_ms: int,
    validator: KlineValidator | None = None,
    progress: Progress | None = None,
) -> list[ValidationResult]:
    """Validate the ``raw`` klines of each symbol over the range and publish the passing days to ``validated``."""
    validator = validator or KlineValidator()
    results = []
    for symbol in symbols:
        frame = lake.read_range(root, "raw", [symbol], start_ms, end_ms)
        result = validator.validate(frame, symbol, start_ms, end_ms)
        for lo, hi in _passing_runs(result):
            rows = frame[(frame["open_time"] >= lo) & (frame["open_time"] < hi)]
            lake.write_range(root, "validated", rows, lo, hi, symbols=[symbol])
        if not result.success:
            log.warning("validation failed symbol=%s\n%s", symbol, result.report())
        if progress is not None:
            progress(symbol, result.rows)
        results.append(result)
    return results


@dataclass
class BackfillSummary:
    """What a backfill did: rows per symbol, known outage hours, and failed rules."""

    start_ms: int
    end_ms: int
    source: str
    fetched: dict[str, int] = field(default_factory=dict)
    results: list[ValidationResult] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.fetched.values()) if self.fetched else sum(r.rows for r in self.results)

    @property
    def validated_rows(self) -> int:
        return sum(r.rows for r in self.results if r.success)

    @property
    def known_gap_hours(self) -> list[int]:
        """Distinct known outage hours met in the range (any symbol)."""
        return sorted({h for r in self.results for h in r.known_gaps})

    @property
    def failures(self) -> list[ValidationResult]:
        return [r for r in self.results if not r.success]

    def report(self) -> str:
        lines = [
            f"{self.source}: [{format_hour(self.start_ms)}, {format_hour(self.end_ms)}), "
            f"{self.rows} klines, {len(self.known_gap_hours)} known outage hours, {len(self.failures)} failed symbol(s)"
        ]
        lines += [r.report() for r in self.results if not r.success]
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise ValidationFailed (the report names rule, symbol and hours) if any symbol failed."""
        if self.failures:
            first = self.failures[0].failures[0]
            raise ValidationFailed(
                f"kline validation failed: {first.describe(limit=3)}",
                report="\n".join(r.report() for r in self.failures),
            )


def backfill(
    root: Path,
    source: KlineSource,
    symbols: Sequence[str],
    start_ms: int,
    end_ms: int,
    validator: KlineValidator | None = None,
    fetch_progress: Progress | None = None,
    validate_progress: Progress | None = None,
) -> BackfillSummary:
    """Fetch → raw → validate → validated for the range; never raises on bad data (see the summary)."""
    if end_ms <= start_ms:
        raise ValueError(f"empty range: start {format_hour(start_ms)} is not before end {format_hour(end_ms)}")
    summary = BackfillSummary(start_ms, end_ms, source.describe())
    summary.fetched = ingest_raw(root, source, symbols, start_ms, end_ms, fetch_progress)
    summary.results = publish(root, symbols, start_ms, end_ms, validator, validate_progress)
    return summary
