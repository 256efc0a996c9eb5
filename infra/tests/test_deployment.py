"""The deployments a user can take: compose.yaml, the Kubernetes manifests in
deploy/kubernetes and the image they run, checked without a Docker engine or a cluster.

The manifests are validated against the Kubernetes JSON schemas that kubernetes-validate
bundles (offline); compose.yaml is parsed; the image's ``uv sync`` runs as a dry run on a
tree holding exactly what the Dockerfile copies.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from pactmesh_harness.mesh import REPO, SERVICES

MANIFESTS = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
DEV_ONLY = ("pytest", "ruff", "mypy", "honcho", "playwright", "schemathesis", "pactmesh-harness")


def kafka_version() -> str:
    """The local scripts' Kafka version: the one source of truth."""
    text = (REPO / "infra" / "kafka" / "kafka.env").read_text()
    match = re.search(r"^KAFKA_VERSION=(\S+)$", text, re.MULTILINE)
    assert match, "kafka.env has no KAFKA_VERSION"
    return match.group(1)


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())  # type: ignore[no-any-return]


@cache
def manifests() -> tuple[dict[str, Any], ...]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return tuple(docs)


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"compose duration {duration!r} is not whole seconds"
    return int(match.group(1))


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


# ---------------------------------------------------------------- Kubernetes


def test_every_manifest_is_a_valid_kubernetes_resource() -> None:
    version = latest_version()
    kinds = set()
    for doc in manifests():
        if doc["kind"] == "Kustomization":
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.add(doc["kind"])
    assert {"Deployment", "Service", "ConfigMap", "Job", "PodDisruptionBudget"} <= kinds


def test_the_validator_refuses_a_misspelt_field() -> None:
    """The schemas are strict: a field Kubernetes does not know is an error, not ignored."""
    deployment = copy.deepcopy(resources("Deployment")["pactmesh-intake"])
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, latest_version(), strict=True)


def test_the_kustomization_applies_every_manifest() -> None:
    (kustomization,) = [d for d in manifests() if d["kind"] == "Kustomization"]
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_replicated_with_probes_secrets_and_grace(service: str) -> None:
    deployment = resources("Deployment")[f"pactmesh-{service}"]
    spec = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    assert deployment["spec"]["replicas"] >= 2
    assert main["command"] == ["python", "-m", f"pactmesh_{service}"]
    assert main["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/health/live"
    grace = seconds(compose()["services"][service]["stop_grace_period"])
    assert spec["terminationGracePeriodSeconds"] == grace
    env = {e["name"]: e for e in main["env"]}
    assert env["KAFKA_SASL_USERNAME"]["value"] == service
    secrets = {"KAFKA_SASL_PASSWORD", "PACTMESH_POSTGRES_URL"} & settings_names(service)
    assert "KAFKA_SASL_PASSWORD" in secrets
    for secret in secrets:
        ref = env[secret]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "pactmesh-credentials", secret
    assert f"pactmesh-{service}" in resources("Service")
    assert f"pactmesh-{service}" in resources("PodDisruptionBudget")
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert mounts["policy"] == "/etc/pactmesh/policy"


def test_the_policy_config_map_ships_the_packaged_policies() -> None:
    """Deployments start from the policies the packages carry; editing them is the
    operator's (this test then tells whoever changes a packaged default to copy it)."""
    data = resources("ConfigMap")["pactmesh-policy"]["data"]
    access = REPO / "services" / "kit" / "src" / "pactmesh_kit" / "auth" / "access.toml"
    (gates,) = [p for p in REPO.glob("*/**/src/**/gates.toml") if ".venv" not in p.parts]
    for name, packaged in (("access.toml", access), ("gates.toml", gates)):
        assert data[name] == packaged.read_text(), (
            f"deploy/kubernetes/policy.yaml's {name} differs from {packaged.relative_to(REPO)}: "
            "run `uv run python deploy/render_policy.py`"
        )
    config = resources("ConfigMap")["pactmesh-config"]["data"]
    assert config["PACTMESH_ACCESS_POLICY"] == "/etc/pactmesh/policy/access.toml"
    orchestrator = {
        e["name"]: e for e in container(resources("Deployment")["pactmesh-orchestrator"])["env"]
    }
    assert orchestrator["PACTMESH_ORCHESTRATOR_GATE_POLICY"]["value"] == (
        "/etc/pactmesh/policy/gates.toml"
    )


# ---------------------------------------------------------------- compose


def test_compose_runs_three_brokers_of_the_local_kafka_version() -> None:
    services = compose()["services"]
    brokers = {n: s for n, s in services.items() if s.get("image", "").startswith("apache/kafka")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    for name, broker in brokers.items():
        assert broker["image"] == f"apache/kafka:{kafka_version()}", name
        env = broker["environment"]
        assert env["KAFKA_NODE_ID"] == int(name[-1])
        assert env["KAFKA_VOTERS"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        assert set(env["KAFKA_SCRAM_USERS"].split()) >= set(SERVICES)


def test_the_maven_pom_defaults_to_the_same_kafka_version() -> None:
    pom = (REPO / "infra" / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{kafka_version()}</kafka.version>" in pom


def test_compose_runs_the_dependencies_and_the_trace_viewer() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector")
    assert services["jaeger"]["image"].startswith("jaegertracing/")
    assert services["topics"]["command"][:2] == ["pactmesh-topics", "--acls"]


@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_two_replicas_of_each_service_as_itself(service: str) -> None:
    spec = compose()["services"][service]
    assert spec["deploy"]["replicas"] == 2
    assert spec["image"] == "pactmesh:local"
    assert spec["command"] == ["python", "-m", f"pactmesh_{service}"]
    env = spec["environment"]
    assert env["KAFKA_SASL_USERNAME"] == service
    assert env["KAFKA_SASL_PASSWORD"].startswith(f"${{PACTMESH_KAFKA_{service.upper()}_PASSWORD:?")
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    if "PACTMESH_POSTGRES_URL" in settings_names(service):
        assert env["PACTMESH_POSTGRES_URL"].startswith("postgresql://")
    assert "/health/ready" in " ".join(spec["healthcheck"]["test"])


def test_compose_shares_rate_limits_in_redis_with_a_storage_intake_can_open() -> None:
    from pactmesh_intake.adapters.rate_limits import TenantRateLimiter

    uri = compose()["services"]["intake"]["environment"]["PACTMESH_INTAKE_RATE_LIMIT_STORAGE"]
    assert uri.startswith("redis://redis:")
    # Builds the storage client (no connection yet): fails when the driver is missing.
    TenantRateLimiter("submit", "1/second", storage_uri=uri)


# ---------------------------------------------------------------- the same settings everywhere

RUN_SH = REPO / "infra" / "run.sh"
DIFFERENCES = {
    "compose": {
        # The development token issuer, whose key the replicas share on a volume.
        "PACTMESH_AUTH_KEY_DIR",
        # compose publishes every port on the host, so /metrics takes Prometheus' token;
        # in Kubernetes the pods answer inside the cluster only, and scrapers need none.
        "PACTMESH_METRICS_TOKEN",
    },
    "kubernetes": {
        # Kafka over TLS, verified against the cluster's CA.
        "KAFKA_SSL_CAFILE",
        # Tokens from an identity provider.
        "PACTMESH_AUTH_JWKS_URL",
        "PACTMESH_AUTH_ISSUER",
        "PACTMESH_AUTH_AUDIENCE",
        "PACTMESH_AUTH_ALGORITHMS",
        # The policies from a ConfigMap (compose runs the packaged ones).
        "PACTMESH_ACCESS_POLICY",
        "PACTMESH_ORCHESTRATOR_GATE_POLICY",
    },
}
"""What one deployment sets and the other does not, and why; anything else differing is
a setting forgotten in one of them."""


def compose_names(service: str) -> set[str]:
    return set(compose()["services"][service]["environment"])


def kubernetes_names(service: str) -> set[str]:
    main = container(resources("Deployment")[f"pactmesh-{service}"])
    names = {e["name"] for e in main.get("env", [])}
    maps = resources("ConfigMap")
    for source in main.get("envFrom", []):
        names |= set(maps[source["configMapRef"]["name"]]["data"])
    return names


def launcher_env(service: str, protocol: str, data_dir: Path) -> dict[str, str]:
    """What ``infra/run.sh`` gives ``service`` on a local broker secured with ``protocol``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PACTMESH_"))}
    env = clean | {"KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [str(RUN_SH), "env", service], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def settings_names(service: str) -> set[str]:
    """Every environment variable ``service``'s settings read."""
    from importlib import import_module

    from pydantic import AliasChoices

    settings = import_module(f"pactmesh_{service}.settings").Settings
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, info in settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice for choice in alias.choices if isinstance(choice, str)}
        else:
            names.add(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def differences(deployment: str, service: str) -> set[str]:
    own = {n for n in DIFFERENCES[deployment] if not n.startswith("PACTMESH_ORCHESTRATOR_")}
    return own if service != "orchestrator" else set(DIFFERENCES[deployment])


@pytest.mark.parametrize("service", SERVICES)
def test_compose_kubernetes_and_the_launcher_set_the_same_settings(
    service: str, tmp_path: Path
) -> None:
    composed, deployed = compose_names(service), kubernetes_names(service)
    assert composed - deployed == differences("compose", service)
    assert deployed - composed == differences("kubernetes", service)
    # What the local launcher sets, on a broker secured as each deployment's is.
    protocol = compose()["services"][service]["environment"]["KAFKA_SECURITY_PROTOCOL"]
    assert set(launcher_env(service, protocol, tmp_path / "compose")) <= composed
    protocol = resources("ConfigMap")["pactmesh-config"]["data"]["KAFKA_SECURITY_PROTOCOL"]
    assert set(launcher_env(service, protocol, tmp_path / "kubernetes")) <= deployed


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_a_deployment_sets_is_one_the_service_reads(service: str) -> None:
    """A misspelt or retired variable would be ignored silently by the service."""
    known = settings_names(service)
    for names in (compose_names(service), kubernetes_names(service)):
        unread = {n for n in names - known if not n.startswith("OTEL_")}
        assert not unread, f"{service} reads none of {sorted(unread)}"


def test_the_platforms_grace_is_the_services_own() -> None:
    """compose's stop_grace_period, Kubernetes' terminationGracePeriodSeconds and the
    services' own shutdown grace (PACTMESH_SHUTDOWN_GRACE_S) are one figure."""
    from pactmesh_kit.settings import KitSettings

    default = KitSettings.model_fields["shutdown_grace_s"].default
    for service in SERVICES:
        spec = compose()["services"][service]
        deployment = resources("Deployment")[f"pactmesh-{service}"]
        pod = deployment["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
        own = float(spec["environment"].get("PACTMESH_SHUTDOWN_GRACE_S", default))
        assert float(env.get("PACTMESH_SHUTDOWN_GRACE_S") or default) == own, service
        assert seconds(spec["stop_grace_period"]) == own, service
        assert pod["terminationGracePeriodSeconds"] == own, service


# ---------------------------------------------------------------- the image


def _dockerfile_steps() -> tuple[list[str], str]:
    """The build context paths the Dockerfile copies, and its ``uv sync`` command."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    copied: list[str] = []
    sync = ""
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied += words[1:-1]
        elif words[:3] == ["RUN", "uv", "sync"]:
            sync = " ".join(words[1:])
    return copied, sync


def test_the_image_installs_only_the_services_from_the_lock(tmp_path: Path) -> None:
    copied, sync = _dockerfile_steps()
    assert "--locked" in sync
    assert "--no-dev" in sync
    assert "--all-packages" not in sync
    context = tmp_path / "context"
    context.mkdir()
    tracked = (
        subprocess.run(
            ["git", "ls-files", "-z", "--", *copied], cwd=REPO, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    with tempfile.TemporaryFile() as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for name in filter(None, tracked):
                tar.add(REPO / name, arcname=name)
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(context, filter="data")
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to check the image's install step"
    planned = subprocess.run(
        [uv, *shlex.split(sync)[1:], "--offline", "--dry-run"],
        cwd=context,
        env={
            **{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
            "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"),
        },
        capture_output=True,
        text=True,
    )
    assert planned.returncode == 0, planned.stderr
    installs = {
        line.split()[1].split("==")[0]
        for line in planned.stderr.splitlines()
        if line.startswith(" + ")
    }
    assert {f"pactmesh-{s}" for s in SERVICES} <= installs
    assert not installs & set(DEV_ONLY), sorted(installs & set(DEV_ONLY))
