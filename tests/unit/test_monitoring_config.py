"""The compose stack's Prometheus rules and Grafana dashboard only name metrics the processes expose, and the
files are what Prometheus and Grafana read (well-formed YAML/JSON with the fields they need)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from adapters.ops_http import Readiness
from klinestream.observability import count_requests
from streaming.metrics import IngestorMetrics, StreamMetrics

DOCKER = Path(__file__).resolve().parents[2] / "docker"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "unknown": ("",)}


def exposed() -> set[str]:
    """Every sample name the stream's and the ingestor's registries (and the shared ops parts) can expose."""
    from aiohttp import web

    stream, ingestor = CollectorRegistry(), CollectorRegistry()
    StreamMetrics(stream)
    Readiness({}, registry=stream)
    count_requests(web.Application(), stream)
    IngestorMetrics(ingestor)
    families = [*stream.collect(), *ingestor.collect()]
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def referenced(text: str) -> set[str]:
    return set(re.findall(r"\bklinestream_[a-z_]+", text))


def test_rules_and_dashboard_name_only_exposed_metrics() -> None:
    names = exposed()
    rules = (DOCKER / "prometheus" / "alerts.yml").read_text()
    dashboard = (DOCKER / "grafana" / "dashboards" / "klinestream.json").read_text()
    for where, text in (("alerts.yml", rules), ("klinestream.json", dashboard)):
        unknown = referenced(text) - names
        assert not unknown, f"{where} names metrics no process exposes: {sorted(unknown)}"
    assert len(referenced(dashboard)) >= 15


def test_the_files_have_what_prometheus_and_grafana_read() -> None:
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert jobs["stream"] == ["stream:9101"] and jobs["ingestor"] == ["ingestor:9102"]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    groups = yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert all({"alert", "expr", "labels", "annotations"} <= set(rule) for rule in rules)
    assert {"KlinestreamKillSwitchOn", "KlinestreamDailyLossStop", "KlinestreamStaleKlines",
            "KlinestreamDeadLetterBurst", "KlinestreamNotReady"} <= {rule["alert"] for rule in rules}  # fmt: skip
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "klinestream.json").read_text())
    assert dashboard["uid"] == "klinestream" and all(p["targets"] for p in dashboard["panels"])
    provider = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "dashboards" / "klinestream.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
