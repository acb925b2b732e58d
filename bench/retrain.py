"""Wall time of a full ``dqn_retrain`` DAG run (both variants, the default configuration) on the local stack.

    .venv/bin/python bench/retrain.py [--data-dir ../shared/data/binance_spot_1h] [--episodes N ...]

Runs the real DAG with Airflow's ``dag.test()`` (tasks in this process, one after the other: the mapped
variants do not overlap here, unlike under the scheduler's LocalExecutor) against the MLflow server of
``klinestream stack up mlflow``. Set-up is not timed: a temporary AIRFLOW_HOME is migrated, and the real
klines are written into a temporary lake's ``validated`` zone (a bench shortcut: the DAG reads that zone
only; the klines_backfill DAG is what validates them in production). Versions go to the registered model
``klinestream-dqn-bench`` unless ``--model-name`` says otherwise, so the bench never moves the real
champion. Prints the time of each task, the total and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "binance_spot_1h"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("KLINESTREAM_DATA_DIR", DEFAULT_DATA)))
    parser.add_argument("--train-range", default="2021-01-01:2022-01-01")
    parser.add_argument("--test-range", default="2023-01-01:2023-02-01")
    parser.add_argument("--episodes", type=int, default=None, help="Episodes per env (default: full training).")
    parser.add_argument("--episode-hours", type=int, default=None)
    parser.add_argument("--n-envs", type=int, default=None)
    parser.add_argument("--model-name", default="klinestream-dqn-bench")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    return parser.parse_args()


def _prepare(args: argparse.Namespace, work: Path) -> None:
    """Isolated Airflow home (migrated) and a validated lake holding the real klines."""
    os.environ.update(
        {
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{work / 'airflow' / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "KLINESTREAM_HOME": str(work / "home"),
            "KLINESTREAM_LAKE_DIR": str(work / "lake"),
            "KLINESTREAM_MLFLOW_MODEL_NAME": args.model_name,
            "KLINESTREAM_DEVICE": args.device,
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=900)
    from adapters import lake
    from adapters.kline_files import read_kline_folder
    from models.settings import load_settings

    settings = load_settings()
    frame = read_kline_folder(args.data_dir, settings.symbols)
    start, end = int(frame["open_time"].min()), int(frame["open_time"].max()) + 3_600_000
    lake.write_range(settings.lake_root, "validated", frame, start, end)


def _task_seconds(dag_run: Any) -> list[tuple[str, float]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        instances = session.query(TaskInstance).filter(TaskInstance.run_id == dag_run.run_id).all()
        rows = [
            (ti.task_id + (f"[{ti.rendered_map_index or ti.map_index}]" if ti.map_index >= 0 else ""),
             (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else float("nan"))
            for ti in sorted(instances, key=lambda t: (t.start_date is None, t.start_date))
        ]  # fmt: skip
    return rows


def main() -> None:
    args = _arguments()
    with tempfile.TemporaryDirectory(prefix="klinestream-bench-retrain-") as tmp:
        _prepare(args, Path(tmp))
        from klinestream.airflow_dags import load_dag
        from models.settings import load_settings

        settings = load_settings()
        dag = load_dag("dqn_retrain")
        conf = {"train_range": args.train_range, "test_range": args.test_range, "episodes": args.episodes,
                "episode_hours": args.episode_hours, "n_envs": args.n_envs}  # fmt: skip
        started = time.perf_counter()
        dag_run = dag.test(run_conf=conf)
        seconds = time.perf_counter() - started
        tasks = _task_seconds(dag_run)
    print(f"dqn_retrain bench: state={dag_run.state} conf={json.dumps(conf)}")
    print(f"  mlflow={settings.mlflow_tracking_uri} model={args.model_name} device={args.device}")
    for task_id, task_seconds in tasks:
        print(f"  {task_id:<28} {task_seconds:9.1f} s")
    load = os.getloadavg()
    print(f"dqn_retrain wall time (both variants, dag.test): {seconds:.1f} s")
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if dag_run.state != "success":
        sys.exit(1)


if __name__ == "__main__":
    main()
