"""The demo's market data: choose a source (Binance → kline files → synthetic), backfill the range into
the lake with the backfill pipeline, then run the ``klines_backfill`` DAG for the last hour(s).

Why not the DAG for every hour: ``klines_backfill`` runs one hour per DAG run; two years are 18,000
runs (hours of Airflow overhead on two cores). The pipeline it calls (:func:`pipelines.backfill.backfill`)
takes any range, so the demo bulk-loads the range with it and then shows the DAG path on the last
hour(s) with ``dag.test()`` — the same fetch → raw → validate → validated code, keyed by the interval.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import requests

from klinestream.airflow_dags import load_dag
from models.errors import KlinestreamError
from models.kline import HOUR_MS
from models.settings import Settings
from pipelines.backfill import BackfillSummary, KlineSource

log = logging.getLogger(__name__)

BINANCE_PING = "https://api.binance.com/api/v3/ping"
REPO_ROOT = Path(__file__).resolve().parents[2]
DataKind = Literal["binance", "files", "synthetic"]


@dataclass(frozen=True)
class DataChoice:
    """Where the demo's klines come from, and how the summary labels them."""

    kind: DataKind
    source: KlineSource
    label: str


def binance_reachable(timeout: float = 3.0, url: str = BINANCE_PING) -> bool:
    """One ping with a short timeout: is Binance's public REST API reachable from here?"""
    try:
        return requests.get(url, timeout=timeout).ok
    except requests.RequestException:
        return False


def _has_kline_files(folder: Path | None, symbols: tuple[str, ...]) -> bool:
    if folder is None or not folder.is_dir():
        return False
    names = {p.name.split(".")[0].split("-")[0].upper() for p in folder.iterdir() if p.is_file()}
    return set(symbols) <= names


def choose_source(
    settings: Settings,
    data_dir: Path | None,
    work: Path,
    start_ms: int,
    end_ms: int,
    probe: Callable[[], bool] = binance_reachable,
) -> DataChoice:
    """Binance when reachable, else the kline files of ``data_dir`` (or KLINESTREAM_DATA_DIR), else
    synthetic klines from :mod:`models.synthetic` written as files under ``work`` (labelled as such)."""
    folder = data_dir or settings.data_dir
    if data_dir is None and probe():
        return DataChoice("binance", KlineSource("binance"), "real Binance klines (REST api.binance.com)")
    if _has_kline_files(folder, settings.symbols):
        assert folder is not None
        return DataChoice("files", KlineSource("files", path=folder), f"real klines from files in {folder}")
    if folder is not None:
        log.warning("no kline files of %s in %s: falling back to synthetic klines", settings.symbols, folder)
    path = write_synthetic(work / "synthetic", settings, start_ms, end_ms)
    return DataChoice(
        "synthetic",
        KlineSource("files", path=path),
        f"SYNTHETIC klines (models/synthetic.py, sine-wave BTCUSDT) in {path} — not market data",
    )


def write_synthetic(folder: Path, settings: Settings, start_ms: int, end_ms: int) -> Path:
    """One CSV per symbol (the header form of the shared files) of synthetic klines over the range."""
    from models.synthetic import synthetic_klines

    frame = synthetic_klines(
        (end_ms - start_ms) // HOUR_MS, settings.symbols, settings.traded_symbol, start_ms=start_ms, seed=7
    )
    folder.mkdir(parents=True, exist_ok=True)
    for symbol, rows in frame.groupby("symbol"):
        rows.drop(columns=["symbol", "interval"]).to_csv(folder / f"{symbol}.csv", index=False)
    return folder


def bulk_backfill(
    settings: Settings,
    choice: DataChoice,
    start_ms: int,
    end_ms: int,
    on_fetch: Callable[[str, int], None] | None = None,
    on_validate: Callable[[str, int], None] | None = None,
) -> BackfillSummary:
    """The backfill pipeline over the whole range (fetch → raw → Great Expectations → validated)."""
    from pipelines.backfill import backfill
    from pipelines.validation import KlineValidator

    summary = backfill(
        settings.lake_root, choice.source, settings.symbols, start_ms, end_ms, KlineValidator(), on_fetch, on_validate
    )
    summary.raise_for_failures()
    return summary


def source_env(settings: Settings, choice: DataChoice | None = None) -> dict[str, str]:
    """The KLINESTREAM_* variables that make a DAG task's ``load_settings()`` see the demo's settings
    (and, with ``choice``, fetch klines from the demo's source)."""
    env = {
        "KLINESTREAM_HOME": str(settings.home),
        "KLINESTREAM_LAKE_DIR": str(settings.lake_root),
        "KLINESTREAM_SYMBOLS": ",".join(settings.symbols),
        "KLINESTREAM_TRADED_SYMBOL": settings.traded_symbol,
        "KLINESTREAM_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "KLINESTREAM_MLFLOW_MODEL_NAME": settings.mlflow_model_name,
        "KLINESTREAM_FEE_RATE": str(settings.fee_rate),
        "KLINESTREAM_DEVICE": settings.device,
    }
    if choice is None:
        return env
    if choice.kind == "binance":
        env["KLINESTREAM_BINANCE_BASE_URL"] = "https://api.binance.com"
    else:
        env["KLINESTREAM_BINANCE_BASE_URL"] = ""
        env["KLINESTREAM_DATA_DIR"] = str(choice.source.path)
    return env


@contextmanager
def exported(env: dict[str, str]) -> Iterator[None]:
    """Set environment variables (an empty value unsets one) for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in env}
    try:
        for name, value in env.items():
            if value:
                os.environ[name] = value
            else:
                os.environ.pop(name, None)
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def run_backfill_dag(end_ms: int, hours: int) -> list[dict[str, Any]]:
    """``dag.test()`` of klines_backfill for the last ``hours`` hours before ``end_ms``, oldest first."""
    dag = load_dag("klines_backfill")
    runs = []
    for k in range(hours, 0, -1):
        # a manual run's data interval is the last complete hour before its logical date
        logical = datetime.fromtimestamp((end_ms - (k - 1) * HOUR_MS) / 1000, tz=UTC)
        dag_run = dag.test(logical_date=logical)
        interval = int(dag_run.data_interval_start.timestamp() * 1000)
        runs.append({"run_id": dag_run.run_id, "state": str(dag_run.state), "hour": interval})
        if dag_run.state != "success":
            raise KlinestreamError(f"klines_backfill run {dag_run.run_id} ended {dag_run.state}; see the task logs")
    return runs
