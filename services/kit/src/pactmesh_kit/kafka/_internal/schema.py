"""The FastStream handler of a batch subscriber, documented as its topic's records.

No ``from __future__ import annotations`` here, on purpose: the handler's parameter is
annotated with an alias built at run time (the topic's record type), which FastStream
reads from the function as written. With postponed annotations it would read the alias's
name instead, and could not resolve it.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from pydantic import TypeAdapter, WithJsonSchema

from pactmesh_kit.kafka._internal.batch import Batch


def documented_batch_handler(
    record_type: Any,
    consume: Callable[[Batch], Awaitable[None]],
    *,
    name: str,
    doc: str | None,
) -> Callable[[Any], Awaitable[None]]:
    """A FastStream handler passing its batch, undecoded, to ``consume``; the AsyncAPI
    document shows ``record_type`` as what the subscriber takes (FastStream documents a
    handler's parameter). Records are decoded one by one later, so that one refused
    record is dead-lettered on its own while the rest of the batch is handled."""
    Records = Annotated[Any, WithJsonSchema(inlined(TypeAdapter(record_type).json_schema()))]

    async def handler(batch: Records) -> None:
        await consume(batch)

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = doc
    return handler


def inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` references replaced by what they name: pydantic
    cannot nest a schema that carries its own ``$defs`` inside another one."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)  # type: ignore[no-any-return]
