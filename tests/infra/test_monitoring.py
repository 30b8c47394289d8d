"""infra/monitoring/: the Grafana dashboard asks only for metrics the farm exports, and
Prometheus scrapes the ports the compose services serve them on.

The metric names come from the farm's own definitions (api/metrics.py, worker/metrics.py,
fresco/metrics.py), as the client library describes them, so a renamed metric fails
here instead of leaving an empty panel. tests/e2e/test_metrics.py scrapes them for real.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "infra" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "fresco.json"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",)}


def exported_names() -> set[str]:
    """Every sample name the farm's metrics can produce."""
    import api.metrics
    import fresco.metrics
    import worker.metrics

    families = list(fresco.metrics.JobStateCollector().describe())
    for module in (api.metrics, fresco.metrics, worker.metrics):
        for obj in vars(module).values():
            if isinstance(obj, MetricWrapperBase):
                families.extend(obj.describe())
    return {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in doc["panels"] for t in panel.get("targets", [])]


def test_dashboard_queries_name_only_exported_metrics():
    names = exported_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    used = {m for e in exprs for m in re.findall(r"\bfresco_[a-z_]+", e)}
    unknown = used - names
    assert not unknown, f"the dashboard queries metrics the farm does not export: {sorted(unknown)}"


def test_dashboard_shows_what_operators_watch():
    used = {m for e in dashboard_exprs() for m in re.findall(r"\bfresco_[a-z_]+", e)}
    for needed in ("fresco_images_rendered_total", "fresco_queue_depth", "fresco_http_request_duration_seconds_bucket",
                   "fresco_batch_size_sum", "fresco_sampling_step_seconds_bucket", "fresco_job_failures_total",
                   "fresco_job_phase_seconds_bucket", "fresco_jobs"):
        assert needed in used, f"no panel shows {needed}"


def test_dashboard_and_datasource_agree():
    doc = json.loads(DASHBOARD.read_text())
    source = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in source["datasources"]}
    for panel in doc["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]


def test_prometheus_scrapes_the_served_ports():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
               for job in config["scrape_configs"]}
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert targets["fresco-api"] == ["api:8000"]
    assert targets["fresco-worker"] == [f"worker:{services['worker']['environment']['FRESCO_METRICS_PORT']}"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], f"{name} starts with the monitoring profile only"
        image = services[name]["image"]
        assert re.search(r":v?\d+\.\d+\.\d+$", image), f"{name}: pin the image to a version, not {image}"
    mounts = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    assert "./infra/monitoring/prometheus.yml:" in mounts and "./infra/monitoring/grafana/dashboards:" in mounts
