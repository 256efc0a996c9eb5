"""Every tool contract bound to its backend over HTTP, generically: the request is built
from the contract's ``Endpoint`` and arguments, the answer checked against its result
model. A new tool is a new contract in ``pactmesh_contracts.tools``, never code here.
Backend names match the sandbox's fault switches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from pactmesh_contracts.events import ToolErrorCode
from pactmesh_contracts.tools import ToolArguments, ToolContract, ToolOutput
from pactmesh_workflows.registry import registry
from pydantic import ValidationError

from pactmesh_tools.adapters.http import HttpBackends
from pactmesh_tools.domain.errors import ToolError
from pactmesh_tools.domain.registry import Tool
from pactmesh_tools.domain.resilience import CallContext

Contract = ToolContract[Any, Any]

SANDBOX_CONTRACTS: tuple[Contract, ...] = registry().tools
"""Every tool some registered workflow calls."""


def backends(contracts: Iterable[Contract]) -> tuple[str, ...]:
    """Every backend the contracts reach, each once; each carrier is one, with its own
    breaker and limit."""
    return tuple(dict.fromkeys(b for contract in contracts for b in contract.backends))


BACKENDS = backends(SANDBOX_CONTRACTS)
"""The backends of the sandbox's tools."""


def bind(contract: Contract, http: HttpBackends) -> Tool:
    """``contract`` as a tool that calls its backend through ``http``."""

    async def run(args: ToolArguments, ctx: CallContext) -> ToolOutput:
        backend, method, path, rest = _request(contract, args)
        body = await http.request(
            backend,
            method,
            path,
            params=rest if method == "GET" else None,
            json=None if method == "GET" else rest,
            idempotent=contract.side_effecting,
            ctx=ctx,
        )
        return _parse(contract, backend, body)

    return Tool(
        contract.name,
        contract.description,
        contract.arguments,
        contract.result,
        run,
        side_effecting=contract.side_effecting,
        backend=contract.endpoint.backend,
    )


def sandbox_tools(
    http: HttpBackends, contracts: Iterable[Contract] = SANDBOX_CONTRACTS
) -> list[Tool]:
    """Every contract in ``contracts``, bound to the sandbox through ``http``."""
    return [bind(contract, http) for contract in contracts]


def _request(contract: Contract, args: ToolArguments) -> tuple[str, str, str, dict[str, Any]]:
    """The backend, method, path and remaining arguments (by alias) of one call."""
    endpoint = contract.endpoint
    named = args.model_dump(mode="json")
    values = {name: str(named[name]) for name in endpoint.placeholders}
    segments = {name: quote(value, safe="") for name, value in values.items()}
    rest = args.model_dump(mode="json", by_alias=True, exclude=set(endpoint.placeholders))
    if endpoint.method == "GET":  # a query string has no null: an unset argument is left out
        rest = {name: value for name, value in rest.items() if value is not None}
    return (
        endpoint.backend.format(**values),
        endpoint.method,
        endpoint.path.format(**segments),
        rest,
    )


def _parse(contract: Contract, backend: str, body: Any) -> ToolOutput:
    try:
        result: ToolOutput = contract.result.model_validate(body)
    except ValidationError as exc:
        raise ToolError(
            ToolErrorCode.BACKEND_ERROR,
            f"{backend} answered outside its contract: {exc}",
            retryable=False,
        ) from exc
    return result
