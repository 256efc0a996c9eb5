"""The metrics stack of ``compose.yaml``, checked without Docker: Prometheus' config
scrapes every service where it listens, with the token compose mounts; Grafana's
provisioning finds the dashboard and its data source; the dashboard's panels query only
families the mesh exports (``pactmesh_kit.metrics.FAMILIES``)."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pactmesh_harness.mesh import REPO, SERVICES
from pactmesh_kit.metrics import FAMILIES

INFRA = REPO / "infra"
DASHBOARD = INFRA / "grafana" / "dashboards" / "pactmesh.json"
SUFFIXES = ("", "_bucket", "_count", "_sum")
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "le"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _compose() -> Any:
    return _yaml(REPO / "compose.yaml")


def test_prometheus_scrapes_every_service_where_it_listens_with_the_token() -> None:
    config = _yaml(INFRA / "prometheus" / "prometheus.yml")
    compose = _compose()
    mounted = {c["target"] for c in compose["services"]["prometheus"]["configs"]}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SERVICES)
    for service, job in jobs.items():
        port = importlib.import_module(f"pactmesh_{service}.settings").Settings().port
        [target] = job["dns_sd_configs"]
        assert (target["names"], target["port"]) == ([service], port)
        assert service in compose["services"], f"{service} is no compose service"
        assert job["authorization"]["credentials_file"] in mounted
        assert job.get("metrics_path", "/metrics") == "/metrics"
    token = compose["configs"]["metrics-token"]["content"]
    assert token == compose["x-env"]["PACTMESH_METRICS_TOKEN"]


def test_grafana_is_provisioned_with_the_dashboard_and_its_data_source() -> None:
    compose = _compose()["services"]["grafana"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in compose["volumes"])
    provider = _yaml(INFRA / "grafana" / "provisioning" / "dashboards" / "pactmesh.yml")
    [source] = provider["providers"]
    assert mounts["./infra/grafana/dashboards"] == source["options"]["path"]
    assert mounts["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"
    [datasource] = _yaml(INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if p["type"] != "row"}
    assert uids == {datasource["uid"]}


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_shows_the_journey_lag_and_spend_from_exported_families() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert [p["title"] for p in dashboard["panels"] if p["type"] == "row"] == [
        "A request's journey",
        "Lag",
        "Model spend",
    ]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    families = {f for fs in FAMILIES.values() for f in fs}
    known = {f"{family}{suffix}" for family in families for suffix in SUFFIXES}
    used: set[str] = set()
    for expr in _exprs(dashboard):
        for opening, closing in ("()", "[]", "{}"):
            assert expr.count(opening) == expr.count(closing), expr
        without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
        names = set(re.findall(r"[a-z_][a-z0-9_]*", without_labels))
        by_labels = set(re.findall(r"by \(([^)]*)\)", without_labels))
        labels = {label.strip() for group in by_labels for label in group.split(",")}
        used |= names - PROMQL_WORDS - labels
    assert used <= known, used - known
    shown = {f for f in families if any(name.startswith(f) for name in used)}
    assert shown == families, f"not on the dashboard: {families - shown}"
