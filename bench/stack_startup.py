"""Start-up time and memory of each local service: cold (fresh data) and warm (restart on existing data).

Runs a second, throw-away stack in a temporary home on shifted ports (default +10000), one service at a
time, so the figures are not mixed up and the development stack in ``var/`` is neither touched nor wiped.
Prints a table; asserts nothing. Needs ``klinestream stack install`` to have run.

    .venv/bin/python bench/stack_startup.py [--services kafka cassandra mlflow airflow] [--port-offset 10000]
"""

from __future__ import annotations

import argparse
import logging
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from klinestream.stack import control
from klinestream.stack.process import host_port_from_bootstrap, host_port_from_url
from klinestream.stack.secrets import ensure_secrets
from klinestream.stack.services import SERVICE_NAMES, Service, build_services
from models.settings import Settings, load_settings


@dataclass(frozen=True)
class Start:
    """One start: wall seconds from ``up`` to healthy (config and storage format included) and memory after."""

    seconds: float
    rss_bytes: int


def bench_settings(base: Settings, home: Path, offset: int) -> Settings:
    """Settings of the throw-away stack: its own home (sharing the installed jars) and shifted ports."""
    (home / "jvm").symlink_to(base.jvm_dir, target_is_directory=True)
    kafka_host, kafka_port = host_port_from_bootstrap(base.kafka_bootstrap_servers)
    mlflow_host, mlflow_port = host_port_from_url(base.mlflow_tracking_uri)
    airflow_host, airflow_port = host_port_from_url(base.airflow_api_url)
    settings = load_settings(
        home=home,
        kafka_bootstrap_servers=f"{kafka_host}:{kafka_port + offset}",
        cassandra_port=base.cassandra_port + offset,
        mlflow_tracking_uri=f"http://{mlflow_host}:{mlflow_port + offset}",
        airflow_api_url=f"http://{airflow_host}:{airflow_port + offset}",
    )
    # the throw-away stack is locked like the real one, with its own passwords in its own home
    return ensure_secrets(settings)


def timed_start(service: Service) -> Start:
    began = time.monotonic()
    [result] = control.up([service], report=lambda _: None)
    return Start(time.monotonic() - began, result.rss_bytes)


def bench_service(service: Service) -> tuple[Start, float, Start]:
    """Cold start on an empty data folder, stop, warm start on the data it left; stop again."""
    shutil.rmtree(service.root, ignore_errors=True)
    cold = timed_start(service)
    stopped = control.stop(service)
    warm = timed_start(service)
    control.stop(service)
    return cold, stopped.seconds, warm


def _mb(value: int) -> str:
    return f"{value / 2**20:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", nargs="+", default=list(SERVICE_NAMES), choices=SERVICE_NAMES)
    parser.add_argument("--port-offset", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    console = Console(soft_wrap=True)
    table = Table(title="klinestream stack start-up (one service at a time)")
    for column in ("service", "cold start s", "RSS after cold MB", "stop s", "warm start s", "RSS after warm MB"):
        table.add_column(column, justify="right" if column != "service" else "left")
    with tempfile.TemporaryDirectory(prefix="klinestream-bench-") as tmp:
        settings = bench_settings(load_settings(), Path(tmp), args.port_offset)
        for service in build_services(settings, args.services):
            console.print(f"{service.name}: cold start, stop, warm start on port {service.port} ...")
            try:
                cold, stop_s, warm = bench_service(service)
            finally:
                control.stop(service)
            table.add_row(
                service.name,
                f"{cold.seconds:.1f}",
                _mb(cold.rss_bytes),
                f"{stop_s:.1f}",
                f"{warm.seconds:.1f}",
                _mb(warm.rss_bytes),
            )
    console.print(table)
    cpu = f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    console.print(f"machine: {platform.node()} {platform.machine()}, {cpu}; RSS includes child processes")


if __name__ == "__main__":
    main()
