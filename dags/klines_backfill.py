"""klines_backfill — one run per hour: fetch the hour's klines of every symbol → lake ``raw`` → Great
Expectations → lake ``validated``; publishes the ``klinestream://lake/validated/klines_1h`` asset.

Thin on purpose: all logic lives in ``pipelines.backfill``; heavy imports happen inside the tasks.
Every write is keyed by the run's data interval, so reruns and backfills are idempotent. The source is
chosen by the settings: ``KLINESTREAM_BINANCE_BASE_URL`` (the simulator or any Binance-compatible API),
else ``KLINESTREAM_DATA_DIR`` (kline files), else Binance itself.

No catch-up: once unpaused, the DAG runs each new hour as it closes. History is loaded on purpose, with
``klinestream backfill`` (bulk) or ``airflow backfill create`` (through the scheduler, one run per hour).
With catch-up on, unpausing would queue one run per hour since 2021-01-01 (about 50,000 runs), and each
success would trigger ``dqn_retrain`` through the asset.

Backfill a range (needs a running scheduler; Airflow 3.3 leaves backfill runs queued while the DAG is
paused, so unpause it first)::

    airflow dags unpause klines_backfill
    airflow backfill create --dag-id klines_backfill \
        --from-date 2022-03-04T00:00:00+00:00 --to-date 2022-03-04T03:00:00+00:00 --max-active-runs 2

``--from-date``/``--to-date`` are logical dates, both inclusive; a run's logical date is the start of its
hour, so this example runs the four hours 00:00–03:00 (data intervals [00:00, 01:00) … [03:00, 04:00)).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, get_current_context, task

from pipelines.dag_alerts import on_dag_failure

VALIDATED_KLINES = Asset("klinestream://lake/validated/klines_1h")


def _interval_ms() -> tuple[int, int]:
    """The run's data interval ``[start, end)`` in epoch ms."""
    context = get_current_context()
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        raise ValueError("klines_backfill needs a data interval; trigger it with a logical date")
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


with DAG(
    dag_id="klines_backfill",
    description="Hourly klines of every symbol: fetch → raw → validate → validated",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2021, 1, 1, tzinfo=UTC),
    catchup=False,  # history: klinestream backfill or airflow backfill create (see above)
    max_active_runs=4,
    is_paused_upon_creation=True,
    default_args={
        "owner": "klinestream",
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
    },
    on_failure_callback=on_dag_failure,  # one dag_failed alert per failed run
    tags=["klinestream", "market-data"],
) as dag:

    @task
    def fetch_raw() -> dict[str, int]:
        """Fetch the interval's closed klines of every symbol into the lake's raw zone."""
        from models.settings import load_settings
        from pipelines.backfill import ingest_raw, resolve_source

        settings = load_settings()
        start_ms, end_ms = _interval_ms()
        source = resolve_source(settings)
        # an hour Binance has not published yet fails this task (and its retry fetches again)
        return ingest_raw(settings.lake_root, source, settings.symbols, start_ms, end_ms, require_complete=True)

    @task(outlets=[VALIDATED_KLINES])
    def validate_and_publish(fetched: dict[str, int]) -> dict[str, Any]:
        """Validate the interval's raw klines; publish passing partitions; fail naming rule, symbol, hours."""
        from models.settings import load_settings
        from pipelines.backfill import BackfillSummary, publish

        settings = load_settings()
        start_ms, end_ms = _interval_ms()
        results = publish(settings.lake_root, settings.symbols, start_ms, end_ms)
        summary = BackfillSummary(start_ms, end_ms, "lake raw", fetched=fetched, results=results)
        summary.raise_for_failures()
        return {"rows": summary.rows, "known_gap_hours": summary.known_gap_hours}

    validate_and_publish(fetch_raw())
