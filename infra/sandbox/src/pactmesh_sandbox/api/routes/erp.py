"""The ERP: purchase orders (a side effect)."""

import uuid

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse

from pactmesh_sandbox.api.deps import CallerDep, IdempotencyKey, StoreDep, stored_response
from pactmesh_sandbox.models import PurchaseOrder, PurchaseOrderCreated, PurchaseOrderRequest
from pactmesh_sandbox.store import Effect

router = APIRouter(prefix="/erp", tags=["erp"])


@router.post(
    "/purchase-orders",
    status_code=status.HTTP_201_CREATED,
    response_model=PurchaseOrderCreated,
    responses={409: {"description": "Idempotency-Key reused for another request"}},
)
async def create_purchase_order(
    order: PurchaseOrderRequest, key: IdempotencyKey, store: StoreDep, caller: CallerDep
) -> JSONResponse:
    """Raise a purchase order, once per idempotency key."""

    def create() -> Effect:
        po_id = f"PO-{uuid.uuid4().hex[:12].upper()}"
        created = PurchaseOrderCreated(po_id=po_id, amount=order.amount)
        return Effect(id=po_id, response=created.model_dump(mode="json"))

    return stored_response(
        store.perform(
            kind="purchase_order",
            key=key,
            tenant=caller.tenant,
            principal=caller.principal,
            endpoint="POST /erp/purchase-orders",
            body=order.model_dump(mode="json"),
            effect=create,
        )
    )


@router.get("/purchase-orders/{po_id}", responses={404: {"description": "No such order"}})
async def get_purchase_order(po_id: str, store: StoreDep, caller: CallerDep) -> PurchaseOrder:
    """A purchase order the caller's tenant raised earlier."""
    entry = store.entry(kind="purchase_order", entity_id=po_id)
    if entry is None or entry.tenant != caller.tenant:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"purchase order {po_id} not found")
    return PurchaseOrder.model_validate(
        {
            **entry.body,
            "po_id": entry.id,
            "status": "created",
            "idempotency_key": entry.idempotency_key,
            "created_at": entry.at,
        }
    )
