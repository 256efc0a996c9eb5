"""The knowledge base."""

from typing import Annotated

from fastapi import APIRouter, Query

from pactmesh_sandbox.catalog import search_articles
from pactmesh_sandbox.models import KbSearchResult

router = APIRouter(prefix="/kb", tags=["kb"])


@router.get("/search")
async def search(
    q: Annotated[str, Query(min_length=1, max_length=4_000)],
    limit: Annotated[int, Query(ge=1, le=10)] = 3,
) -> KbSearchResult:
    """Articles ranked by how many of the query's terms they contain."""
    return KbSearchResult(hits=search_articles(query=q, limit=limit))
