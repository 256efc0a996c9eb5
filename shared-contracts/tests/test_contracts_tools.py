"""Tool contracts: typed arguments, and the backends and requests an endpoint names."""

from __future__ import annotations

from typing import Literal

import pytest
from pactmesh_contracts.tools import Endpoint, ToolArguments, ToolContract, ToolOutput
from pactmesh_contracts.tools.carriers import CARRIERS_BOOK, CARRIERS_QUOTE, BookArgs
from pactmesh_contracts.tools.kb import KB_SEARCH, KbSearchArgs
from pydantic import ValidationError


class _Args(ToolArguments):
    region: Literal["eu", "us"]
    key: str


class _Out(ToolOutput):
    ok: bool


def test_a_backend_per_value_of_the_argument_its_name_holds() -> None:
    assert CARRIERS_QUOTE.backends == (
        "carriers.northwind",
        "carriers.oceanic",
        "carriers.rapidfreight",
    )
    assert CARRIERS_BOOK.endpoint.placeholders == ("carrier",)
    assert KB_SEARCH.backends == ("kb",)


def test_an_endpoint_naming_an_unknown_argument_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown arguments"):
        ToolContract("x.y", "", _Args, _Out, Endpoint("x", "GET", "/x/{nope}"))


def test_a_backend_placeholder_must_be_a_literal_argument() -> None:
    contract = ToolContract("x.y", "", _Args, _Out, Endpoint("x.{key}", "GET", "/x"))
    with pytest.raises(ValueError, match="must be a Literal"):
        _ = contract.backends
    regional = ToolContract("x.z", "", _Args, _Out, Endpoint("x.{region}", "GET", "/x"))
    assert regional.backends == ("x.eu", "x.us")


def test_arguments_are_strict_and_closed() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        KbSearchArgs.model_validate({"query": "reset", "qurey": "reset"})
    with pytest.raises(ValidationError):
        BookArgs.model_validate(
            {"carrier": "slowboat", "shipment_id": "SH-1", "quote_id": "q", "cost": 1.0}
        )


def test_arguments_travel_by_name_and_reach_the_backend_by_alias() -> None:
    args = KbSearchArgs(query="reset my password", limit=2)
    assert args.model_dump(mode="json") == {"query": "reset my password", "limit": 2}
    assert args.model_dump(mode="json", by_alias=True) == {"q": "reset my password", "limit": 2}
    assert KbSearchArgs.model_validate(args.model_dump(mode="json")) == args
