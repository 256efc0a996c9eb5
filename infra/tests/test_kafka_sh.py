"""infra/kafka/kafka.sh's settings, without starting a broker (the integration tests and
the secured-cluster tests start real ones)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pactmesh_harness.mesh import KAFKA_SH, kafka_sh_env


def kafka_sh(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    return subprocess.run(
        [str(KAFKA_SH), *args], env={**clean, **env}, capture_output=True, text=True
    )


def settings(*args: str, **env: str) -> dict[str, str]:
    done = kafka_sh(*args, **env)
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def test_a_single_node_keeps_the_default_ports_and_data_dir() -> None:
    env = settings("env")
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert env["KAFKA_CONTROLLERS"] == "127.0.0.1:9093"
    assert Path(env["DATA_DIR"]).name == "data"


def test_a_cluster_gives_each_node_its_own_ports_and_bounded_heap() -> None:
    env = settings("env", KAFKA_NODES="3", KAFKA_PORT="19600", KAFKA_CONTROLLER_PORT="19601")
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19600,127.0.0.1:19602,127.0.0.1:19604"
    assert env["KAFKA_CONTROLLERS"] == "127.0.0.1:19601,127.0.0.1:19603,127.0.0.1:19605"
    assert "-Xmx384m" in env["KAFKA_HEAP_OPTS"]
    assert Path(env["DATA_DIR"]).name == "cluster"


def test_explicit_port_lists_win_and_overlaps_are_refused() -> None:
    env = settings(
        "env", KAFKA_NODES="2", KAFKA_PORTS="19610,19611", KAFKA_CONTROLLER_PORTS="19620,19621"
    )
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19610,127.0.0.1:19611"
    clash = kafka_sh("env", KAFKA_NODES="3", KAFKA_PORT="19600", KAFKA_CONTROLLER_PORT="19602")
    assert clash.returncode != 0
    assert "overlap" in clash.stderr


def test_a_secured_deployment_lives_in_its_own_data_dir() -> None:
    env = settings("env", KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    assert Path(env["DATA_DIR"]).name == "data-sasl-ssl"
    refused = kafka_sh("env", KAFKA_SECURITY_PROTOCOL="SSL")
    assert refused.returncode != 0


def test_plaintext_clients_need_no_credentials() -> None:
    assert settings("client-env", "intake", KAFKA_PORT="19600") == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19600",
        "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    }


def test_brokers_run_the_client_compiler_only_unless_told_otherwise() -> None:
    assert settings("env")["KAFKA_JIT_OPTS"] == "-XX:TieredStopAtLevel=1"
    assert settings("env", KAFKA_JIT_OPTS="")["KAFKA_JIT_OPTS"] == ""


def test_the_harness_hands_kafka_sh_the_jit_flags_and_no_other_kafka_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_PORT", "9999")
    monkeypatch.setenv("KAFKA_JIT_OPTS", "")
    env = kafka_sh_env()
    assert "KAFKA_PORT" not in env
    assert env["KAFKA_JIT_OPTS"] == ""
