"""One suite for both stores of workflow state: the SQLite store (the group-commit
checkpointer and its outbox in one file) and the Postgres store (LangGraph's Postgres
checkpointer and the outbox table), each opened as the orchestrator opens it.

The checkpointers pass LangGraph's checkpoint conformance suite
(langgraph-checkpoint-conformance), one test per capability; the capabilities a store
does not implement are declared with the suite's ``skip_capabilities``, each with its
reason, and a test checks that they really are missing (so an implementation added
later is noticed and tested). On Postgres the tests of this module share one database,
so every test uses workflow ids of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability, DetectedCapabilities
from langgraph.checkpoint.conformance.initializer import RegisteredCheckpointer
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_orchestrator.adapters.persistence import open_persistence
from pactmesh_orchestrator.settings import Settings

_NEVER_CALLED = (
    "the orchestrator never calls it: a workflow's checkpoints are kept whole (its run view"
    " reads them), never forked, copied to another thread or pruned"
)
_NOT_IN_SQLITE = f"not in LangGraph's SqliteSaver, whose SQL this saver runs; {_NEVER_CALLED}"
_NOT_IN_POSTGRES = f"not in LangGraph's AsyncPostgresSaver; {_NEVER_CALLED}"
UNSUPPORTED: dict[str, dict[str, str]] = {
    "sqlite": {
        "delete_for_runs": _NOT_IN_SQLITE,
        "copy_thread": _NOT_IN_SQLITE,
        "prune": _NOT_IN_SQLITE,
    },
    "postgres": {"delete_for_runs": _NOT_IN_POSTGRES, "copy_thread": _NOT_IN_POSTGRES},
}
"""Per store, the conformance capabilities it deliberately does not support, and why."""

CASES = [
    (kind, capability.value)
    for kind in ("sqlite", "postgres")
    for capability in Capability
    if capability.value not in UNSUPPORTED[kind]
]


@pytest.fixture
def settings(store_backend: StoreBackend) -> Settings:
    """The orchestrator's settings selecting the store under test."""
    return Settings(**store_backend.settings())


def _registered(
    settings: Settings, kind: str, saver: BaseCheckpointSaver[Any] | None = None
) -> RegisteredCheckpointer:
    """The store's checkpointer as the conformance suite takes it: a fresh store per
    capability suite, or ``saver`` every time when given."""

    @checkpointer_test(name=f"pactmesh-{kind}", skip_capabilities=set(UNSUPPORTED[kind]))
    async def factory() -> AsyncIterator[BaseCheckpointSaver[Any]]:
        if saver is not None:
            yield saver
            return
        async with open_persistence(settings) as store:
            yield store.checkpointer

    return factory


@pytest.mark.parametrize(("store_backend", "capability"), CASES, indirect=["store_backend"])
async def test_langgraph_checkpoint_conformance(
    settings: Settings, store_backend: StoreBackend, capability: str
) -> None:
    report = await validate(_registered(settings, store_backend.kind), capabilities={capability})
    result = report.results[capability]
    assert result.detected, f"{capability} is not implemented; declare it in UNSUPPORTED"
    assert result.failures == []
    assert result.passed
    assert result.tests_passed > 0


async def test_unsupported_capabilities_are_really_missing(
    settings: Settings, store_backend: StoreBackend
) -> None:
    async with open_persistence(settings) as store:
        detected = DetectedCapabilities.from_instance(store.checkpointer)
    assert {c.value for c in detected.missing} == set(UNSUPPORTED[store_backend.kind])


async def test_conformance_with_every_suite_at_once_on_one_store(
    settings: Settings, store_backend: StoreBackend
) -> None:
    """Calls of different tests interleave, and on SQLite share commit groups."""
    async with open_persistence(settings) as store:
        registered = _registered(settings, store_backend.kind, store.checkpointer)
        capabilities = [c for kind, c in CASES if kind == store_backend.kind]
        reports = await asyncio.gather(
            *(validate(registered, capabilities={c}) for c in capabilities)
        )
    failures = [f for r in reports for result in r.results.values() for f in result.failures]
    assert failures == []
    assert all(r.results[c].passed for r, c in zip(reports, capabilities, strict=True))


def _config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


@pytest.fixture
def wf() -> str:
    """A workflow id of this test's own (the Postgres database is the module's)."""
    return f"wf-{uuid.uuid4().hex[:12]}"


async def test_marks_are_per_thread_and_checkpoint_and_survive_reopening(
    settings: Settings, wf: str
) -> None:
    other = f"{wf}-other"
    async with open_persistence(settings) as store:
        outbox = store.outbox
        assert not await outbox.published(wf, "cp-1")
        await outbox.mark(wf, "cp-1")
        await outbox.mark(wf, "cp-1")  # idempotent
        assert await outbox.published(wf, "cp-1")
        assert not await outbox.published(wf, "cp-2")
        assert not await outbox.published(other, "cp-1")
    async with open_persistence(settings) as reopened:
        assert await reopened.outbox.published(wf, "cp-1")


async def test_marks_and_checkpoints_survive_reopening(settings: Settings, wf: str) -> None:
    async with open_persistence(settings) as store:
        saver, outbox = store.checkpointer, store.outbox
        config = await saver.aput(_config(wf), empty_checkpoint(), {}, {})
        await saver.aput_writes(config, [("x", 1)], task_id="t1")
        await outbox.mark(wf, "cp-1")
    async with open_persistence(settings) as store:
        saver, outbox = store.checkpointer, store.outbox
        found = await saver.aget_tuple(_config(wf))
        assert found is not None
        assert [(w[1], w[2]) for w in found.pending_writes or []] == [("x", 1)]
        assert [t.config async for t in saver.alist(_config(wf))] == [found.config]
        assert await outbox.published(wf, "cp-1")
        assert not await outbox.published(wf, "cp-2")


async def test_the_store_opens_and_works_with_a_pool_of_one_connection(
    settings: Settings, wf: str
) -> None:
    """Set-up once took a second connection while holding the first (Postgres)."""
    one = settings.model_copy(update={"postgres_pool_size": 1})
    async with asyncio.timeout(20), open_persistence(one) as store:
        config = await store.checkpointer.aput(_config(wf), empty_checkpoint(), {}, {})
        await store.outbox.mark(wf, config["configurable"]["checkpoint_id"])
        assert await store.checkpointer.aget_tuple(_config(wf)) is not None
