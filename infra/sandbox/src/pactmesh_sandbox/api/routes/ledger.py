"""The ledger: every side effect the sandbox performed."""

from typing import Annotated

from fastapi import APIRouter, Query

from pactmesh_sandbox.api.deps import StoreDep
from pactmesh_sandbox.models import EffectKind, LedgerEntry

router = APIRouter(prefix="/ledger", tags=["ledger"])


@router.get("")
async def ledger(
    store: StoreDep,
    kind: EffectKind | None = None,
    idempotency_key: Annotated[str | None, Query(max_length=200)] = None,
    tenant: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1_000,
) -> list[LedgerEntry]:
    """Side effects in the order they happened; one per idempotency key (and tenant),
    always."""
    return store.ledger(kind=kind, key=idempotency_key, tenant=tenant, limit=limit)
