"""The delivery ledger."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pactmesh_delivery.adapters.ledger import SqliteDeliveryLedger, open_ledger


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqliteDeliveryLedger]:
    async with open_ledger(tmp_path / "delivery.sqlite3") as opened:
        yield opened


async def test_record_marks_only_that_workflow_delivered(ledger: SqliteDeliveryLedger) -> None:
    delivered, other = uuid.uuid4(), uuid.uuid4()
    assert not await ledger.delivered(delivered)

    await ledger.record(delivered, topic="results.refund", event_id=uuid.uuid4())

    assert await ledger.delivered(delivered)
    assert not await ledger.delivered(other)


async def test_record_is_idempotent(ledger: SqliteDeliveryLedger) -> None:
    workflow_id = uuid.uuid4()
    await ledger.record(workflow_id, topic="results.refund", event_id=uuid.uuid4())
    await ledger.record(workflow_id, topic="results.refund", event_id=uuid.uuid4())
    assert await ledger.delivered(workflow_id)


async def test_ledger_survives_reopening(tmp_path: Path) -> None:
    workflow_id = uuid.uuid4()
    async with open_ledger(tmp_path / "ledger.sqlite3") as first:
        await first.record(workflow_id, topic="results.procurement", event_id=uuid.uuid4())
    async with open_ledger(tmp_path / "ledger.sqlite3") as second:
        assert await second.delivered(workflow_id)
