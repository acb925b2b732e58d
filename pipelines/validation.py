"""Kline validation with Great Expectations 1.x, deciding which partitions are published to ``validated``.

The suite (``great_expectations/expectations/klines_1h.json``), the checkpoint configuration
(``great_expectations/checkpoints/klines_1h.json``) and the versioned list of known exchange outages
(``great_expectations/known_outages.json``) live in the top-level ``great_expectations/`` folder; this
module loads them into an ephemeral GX context, so no GX project state is written into the repository.
Data docs go under ``<KLINESTREAM_HOME>/great_expectations/data_docs``.

One batch = one symbol over a range ``[start, end)`` (fast: one GX run per symbol and range), but
publishing is per partition: a day with a failing kline never reaches ``validated``, the other days do.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adapters import lake
from models.kline import HOUR_MS, PRICE_COLUMNS, conform_frame

log = logging.getLogger(__name__)

GE_DIR = Path(__file__).resolve().parents[1] / "great_expectations"
SUITE_FILE = GE_DIR / "expectations" / "klines_1h.json"
CHECKPOINT_FILE = GE_DIR / "checkpoints" / "klines_1h.json"
OUTAGES_FILE = GE_DIR / "known_outages.json"
COMPLETE_SPAN_MS = HOUR_MS - 1
CHECK_COLUMNS = ("hour_offset_ms", "close_time_ok", "hour_accounted", "required_present")


def format_hour(open_time_ms: int) -> str:
    """An open time as a readable UTC hour, e.g. ``2021-02-11 04:00 UTC``."""
    return datetime.fromtimestamp(open_time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _parse_hour(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass(frozen=True)
class KnownOutages:
    """The versioned list of known exchange outages: missing hours and truncated klines."""

    version: int
    missing: tuple[tuple[str, int], ...]  # (symbol or "*", open_time ms)
    truncated: tuple[tuple[str, int], ...]
    source: str = ""

    def missing_hours(self, symbol: str) -> set[int]:
        return {t for s, t in self.missing if s in ("*", symbol)}

    def truncated_hours(self, symbol: str) -> set[int]:
        return {t for s, t in self.truncated if s in ("*", symbol)}


def load_known_outages(path: Path | str = OUTAGES_FILE) -> KnownOutages:
    """Read ``known_outages.json``; entries name an hour (ISO UTC) and ``symbols`` (``"*"`` or a list)."""
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc.get("version"), int):
        raise ValueError(f"{path}: needs an integer 'version' field; bump it on every change")

    def expand(entries: list[dict[str, Any]]) -> tuple[tuple[str, int], ...]:
        pairs = []
        for entry in entries:
            symbols = entry.get("symbols", "*")
            for symbol in [symbols] if isinstance(symbols, str) else symbols:
                pairs.append((symbol, _parse_hour(entry["open_time"])))
        return tuple(pairs)

    return KnownOutages(doc["version"], expand(doc["missing_hours"]), expand(doc["truncated_klines"]), str(path))


@dataclass(frozen=True)
class RuleFailure:
    """One broken rule of the suite for one symbol, with the hours of the klines that broke it."""

    rule: str
    description: str
    symbol: str
    hours: tuple[int, ...]  # open times in ms; empty when the rule concerns the whole batch (columns, types)
    detail: str = ""

    def describe(self, limit: int = 10) -> str:
        if not self.hours:
            return f"{self.rule} ({self.description}) failed for {self.symbol}: {self.detail}"
        shown = ", ".join(format_hour(h) for h in self.hours[:limit])
        more = f" and {len(self.hours) - limit} more" if len(self.hours) > limit else ""
        noun = "hour" if len(self.hours) == 1 else "hours"
        return f"{self.rule} ({self.description}) failed for {self.symbol} at {len(self.hours)} {noun}: {shown}{more}"


@dataclass
class ValidationResult:
    """The outcome of validating one symbol over ``[start_ms, end_ms)``."""

    symbol: str
    start_ms: int
    end_ms: int
    rows: int
    known_gaps: tuple[int, ...] = ()
    failures: list[RuleFailure] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.failures

    @cached_property
    def failed_days(self) -> set[str]:
        """UTC days that must not be published (every day of the range if a batch-wide rule failed)."""
        if any(not f.hours for f in self.failures):
            return set(lake.days_in_range(self.start_ms, self.end_ms))
        return {lake.day_of(h) for f in self.failures for h in f.hours}

    def report(self) -> str:
        span = f"[{format_hour(self.start_ms)}, {format_hour(self.end_ms)})"
        if self.success:
            return f"{self.symbol} {span}: {self.rows} klines passed, {len(self.known_gaps)} known outage hours"
        lines = [
            f"{self.symbol} {span}: {len(self.failures)} rule(s) failed, days kept out of validated: "
            + ", ".join(sorted(self.failed_days)[:10])
            + (" ..." if len(self.failed_days) > 10 else "")
        ]
        lines += [f"  - {f.describe()}" for f in self.failures]
        return "\n".join(lines)


def build_check_frame(
    frame: pd.DataFrame, symbol: str, start_ms: int, end_ms: int, outages: KnownOutages
) -> pd.DataFrame:
    """The batch GX validates: one symbol's klines of the range, outer-joined with the range's hour grid
    (a missing hour becomes a row with only symbol, interval and open_time), plus the derived columns
    the suite's rules read (see the suite's ``meta``)."""
    rows = frame[frame["symbol"] == symbol]
    missing = np.setdiff1d(lake.hour_range(start_ms, end_ms), rows["open_time"].to_numpy())
    holes = pd.DataFrame({"symbol": symbol, "interval": "1h", "open_time": missing.astype("int64")})
    batch = pd.concat([rows, holes], ignore_index=True) if len(holes) else rows.reset_index(drop=True)
    present = np.r_[np.ones(len(rows), dtype=bool), np.zeros(len(holes), dtype=bool)]
    order = np.argsort(batch["open_time"].to_numpy(), kind="stable")
    batch = conform_frame(batch.iloc[order].reset_index(drop=True))  # stable sort: ``order`` still holds
    present = present[order]
    open_time = batch["open_time"].to_numpy()
    span = (batch["close_time"] - batch["open_time"]).to_numpy(dtype="float64", na_value=np.nan)
    truncated = np.isin(open_time, list(outages.truncated_hours(symbol)))
    batch["hour_offset_ms"] = open_time % HOUR_MS
    batch["close_time_ok"] = (
        np.isnan(span) | (span == COMPLETE_SPAN_MS) | (truncated & (span >= 0) & (span < COMPLETE_SPAN_MS))
    )
    batch["hour_accounted"] = present | np.isin(open_time, list(outages.missing_hours(symbol)))
    batch["required_present"] = ~present | batch[[*PRICE_COLUMNS, "volume"]].notna().all(axis=1).to_numpy()
    return batch


def data_docs_dir(home: Path) -> Path:
    """Where the checkpoint's data docs site lives: its ``base_directory`` under ``KLINESTREAM_HOME``."""
    sites = json.loads(CHECKPOINT_FILE.read_text())["data_docs_sites"]
    return Path(home) / next(iter(sites.values()))["base_directory"]


class KlineValidator:
    """Runs the ``klines_1h`` checkpoint on one symbol-range batch at a time.

    The GX context is ephemeral and built once per validator (GX's import takes seconds; reuse the
    validator across symbols). ``docs_dir`` set = the checkpoint's UpdateDataDocsAction renders HTML
    data docs there after each run.
    """

    def __init__(self, docs_dir: Path | None = None, outages: KnownOutages | None = None) -> None:
        self.outages = outages or load_known_outages()
        self.docs_dir = docs_dir
        self._suite_doc = json.loads(SUITE_FILE.read_text())
        self._checkpoint_doc = json.loads(CHECKPOINT_FILE.read_text())
        self._checkpoint = self._build_checkpoint()

    def _build_checkpoint(self) -> Any:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        doc = self._checkpoint_doc
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        actions: list[Any] = []
        if self.docs_dir is not None:
            for site in doc["data_docs_sites"]:
                context.add_data_docs_site(
                    site_name=site,
                    site_config={
                        "class_name": "SiteBuilder",
                        "store_backend": {
                            "class_name": "TupleFilesystemStoreBackend",
                            "base_directory": str(self.docs_dir),
                        },
                        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                    },
                )
            actions = [
                gx.checkpoint.UpdateDataDocsAction(name=a["name"], site_names=a["site_names"])
                for a in doc["actions"]
                if a["type"] == "update_data_docs"
            ]
        asset = context.data_sources.add_pandas(doc["data_source"]).add_dataframe_asset(doc["data_asset"])
        batch_definition = asset.add_batch_definition_whole_dataframe(doc["batch_definition"])
        suite = context.suites.add(gx.ExpectationSuite(**self._suite_doc))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{doc['name']}_validation", data=batch_definition, suite=suite)
        )
        return context.checkpoints.add(
            gx.Checkpoint(
                name=doc["name"],
                validation_definitions=[definition],
                actions=actions,
                result_format=doc["result_format"],
            )
        )

    def validate(self, frame: pd.DataFrame, symbol: str, start_ms: int, end_ms: int) -> ValidationResult:
        """Validate ``symbol``'s klines of ``[start_ms, end_ms)`` in ``frame``; never raises on bad data."""
        batch = build_check_frame(frame, symbol, start_ms, end_ms, self.outages)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = self._checkpoint.run(batch_parameters={"dataframe": batch})
        present = frame.loc[frame["symbol"] == symbol, "open_time"].to_numpy()
        missing = np.setdiff1d(lake.hour_range(start_ms, end_ms), present)
        known = sorted(int(t) for t in set(missing.tolist()) & self.outages.missing_hours(symbol))
        result = ValidationResult(symbol, start_ms, end_ms, rows=len(present), known_gaps=tuple(known))
        for run in outcome.run_results.values():
            for item in run.results:
                if not item.success:
                    result.failures.append(self._failure(item, symbol))
        _merge_rule_failures(result)
        log.info(
            "validated symbol=%s rows=%d known_gaps=%d failures=%d",
            symbol,
            result.rows,
            len(known),
            len(result.failures),
        )
        return result

    @staticmethod
    def _failure(item: Any, symbol: str) -> RuleFailure:
        config = item.expectation_config
        meta = config.meta or {}
        details = item.result or {}
        hours = tuple(sorted({int(row["open_time"]) for row in details.get("unexpected_index_list") or []}))
        detail = ""
        if not hours:
            column = config.kwargs.get("column")
            detail = f"{column + ': ' if column else ''}observed {details.get('observed_value')!r}"
            if item.exception_info and item.exception_info.get("raised_exception"):
                detail += f" ({item.exception_info.get('exception_message')})"
        return RuleFailure(meta.get("rule", config.type), meta.get("description", ""), symbol, hours, detail)


def _merge_rule_failures(result: ValidationResult) -> None:
    """One failure per rule (several expectations implement one rule, e.g. the four price bounds)."""
    merged: dict[str, RuleFailure] = {}
    for failure in result.failures:
        if failure.rule in merged:
            first = merged[failure.rule]
            hours = tuple(sorted(set(first.hours) | set(failure.hours)))
            detail = "; ".join(d for d in (first.detail, failure.detail) if d)
            merged[failure.rule] = RuleFailure(
                first.rule, first.description.split(" (")[0], first.symbol, hours, detail
            )
        else:
            merged[failure.rule] = failure
    result.failures = list(merged.values())
