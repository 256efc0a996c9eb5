"""Plain aiokafka clients beside the broker: the start-up probe and ``pactmesh dlq``."""

from __future__ import annotations

from typing import Any

from aiokafka.client import AIOKafkaClient

from pactmesh_kit.settings import KitSettings


def client_options(settings: KitSettings, *, client_id: str) -> dict[str, Any]:
    """Keyword arguments for aiokafka's clients (admin, producer, consumer): the cluster,
    and how to authenticate to it when the settings say (``kafka_client_options``, where
    the settings provide it)."""
    security = getattr(settings, "kafka_client_options", None)
    options: dict[str, Any] = dict(security()) if callable(security) else {"bootstrap_servers": ""}
    options["bootstrap_servers"] = settings.kafka_bootstrap_servers
    options["client_id"] = client_id
    return options


async def reachable(settings: KitSettings) -> None:
    """Return once the cluster answers a metadata request; raise what refused it.

    Asked before the broker starts, so that a start-up waiting for Kafka retries with a
    client it closes each time (a failed ``KafkaBroker.start`` leaves its producer open).
    """
    options = client_options(settings, client_id=f"{settings.service_name}-probe")
    client = AIOKafkaClient(**options)
    try:
        await client.bootstrap()
    finally:
        await client.close()
