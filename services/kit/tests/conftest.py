"""Fixtures shared by the kit's model-layer tests: a real model simulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pactmesh_model_sim.testing import SimAdmin, serve_in_thread


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """A simulator on a free port for this test module (a real uvicorn server)."""
    with serve_in_thread() as url:
        yield url


@pytest.fixture
def sim(sim_url: str) -> Iterator[SimAdmin]:
    """The simulator's admin API, reset before each test."""
    admin = SimAdmin(sim_url)
    admin.reset()
    yield admin
    admin.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for langchain-openai, living only as long as the test's loop."""
    async with httpx.AsyncClient() as client:
        yield client
