"""Fixtures of the model-layer tests: a real model simulator over HTTP
(``pactmesh_model_sim.testing``), and an HTTP client for langchain-openai."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pactmesh_model_sim.testing import sim, sim_url

__all__ = ["http", "sim", "sim_url"]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for langchain-openai, living only as long as the test's loop."""
    async with httpx.AsyncClient() as client:
        yield client
