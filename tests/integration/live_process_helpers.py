"""Helpers of the tests that run the live path as real processes: a free port, the environment that points a
``klinestream`` process at a test's topics, keyspace and ports, scraping ``/metrics``, reading ``/ready``."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from models.settings import Settings
from tests.waiting import wait_for

KLINESTREAM = str(Path(sys.executable).with_name("klinestream"))
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(settings: Settings, **variables: object) -> dict[str, str]:
    """The test's environment plus the settings a live process must share with the test (topics, keyspace,
    Cassandra's port) and ``variables`` (``stream_metrics_port=…`` → ``KLINESTREAM_STREAM_METRICS_PORT``)."""
    env = {
        **os.environ,
        "KLINESTREAM_CASSANDRA_KEYSPACE": settings.cassandra_keyspace,
        "KLINESTREAM_CASSANDRA_PORT": str(settings.cassandra_port),
        "KLINESTREAM_KAFKA_TOPIC_KLINES": settings.kafka_topic_klines,
        "KLINESTREAM_KAFKA_TOPIC_DLQ": settings.kafka_topic_dlq,
        "KLINESTREAM_SECRETS_FILE": str(settings.secrets_path),
    }  # fmt: skip (the stack's passwords, any home)
    env.update({f"KLINESTREAM_{name.upper()}": str(value) for name, value in variables.items()})
    return env


def scrape(url: str) -> Samples:
    """``/metrics`` at ``url`` parsed with prometheus_client's parser: (name, sorted labels) → value."""
    text = requests.get(url, timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def ready(base: str) -> tuple[bool, dict[str, Any]]:
    try:
        response = requests.get(f"{base}/ready", timeout=5)
        return response.status_code == 200, response.json()
    except requests.RequestException:
        return False, {}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, logs: Callable[[], str]) -> None:
    """Poll ``predicate`` every 0.5 s; fail after ``timeout`` s naming ``what``, with the end of ``logs()``."""
    wait_for(predicate, timeout, interval=0.5, message=lambda: f"{what} not within {timeout} s:\n{logs()[-5000:]}")
