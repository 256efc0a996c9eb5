"""Fixtures for the integration tests: one real broker per session, one mesh per module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pactmesh_harness.mesh import REPO, Broker, Mesh, create_topics, running_mesh, start_broker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests-integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """A real Kafka broker for the whole session."""
    started = start_broker(REPO / ".cache")
    print(f"\nkafka: {started.how} at {started.bootstrap}, ready in {started.startup_s:.1f}s")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def topic_prefix(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> str:
    """A topic prefix of the test's own with every topic created, and the broker's client
    settings (the admin user on a secured cluster) in the environment."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    create_topics(broker, prefix)
    for name, value in broker.client_env().items():
        monkeypatch.setenv(name, value)
    return prefix


@pytest.fixture(scope="module")
def mesh(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """All six services as real processes, on a topic prefix of their own."""
    with running_mesh(broker, tmp_path_factory.mktemp("mesh")) as running:
        print(f"\nmesh: six services ready in {running.startup_s:.1f}s")
        yield running
