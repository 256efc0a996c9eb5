"""The knowledge base: search."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from pactmesh_contracts.tools import Endpoint, ToolArguments, ToolContract, ToolOutput


class KbSearchArgs(ToolArguments):
    """A knowledge-base query."""

    query: Annotated[str, StringConstraints(min_length=1, max_length=4000)] = Field(
        serialization_alias="q"
    )
    """The question, in the requester's words."""
    limit: int = Field(3, ge=1, le=10)
    """The most articles to return."""


class KbHit(ToolOutput):
    """One article that matches."""

    id: str
    title: str
    answer: str
    score: float
    """Share of the query's terms the article contains, 0 to 1."""


class KbSearchResult(ToolOutput):
    """The best articles first."""

    hits: list[KbHit]


KB_SEARCH = ToolContract(
    "kb.search",
    "Search the knowledge base.",
    KbSearchArgs,
    KbSearchResult,
    Endpoint("kb", "GET", "/kb/search"),
)
