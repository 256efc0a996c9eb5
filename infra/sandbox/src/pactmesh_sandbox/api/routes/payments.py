"""Payments: refunds (a side effect)."""

import uuid

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse

from pactmesh_sandbox.api.deps import CallerDep, IdempotencyKey, StoreDep, stored_response
from pactmesh_sandbox.catalog import order as find_order
from pactmesh_sandbox.models import Refund, RefundRequest
from pactmesh_sandbox.store import Effect

router = APIRouter(prefix="/payments", tags=["payments"])


@router.post(
    "/refunds",
    status_code=status.HTTP_201_CREATED,
    response_model=Refund,
    responses={
        404: {"description": "No such order"},
        409: {"description": "Idempotency-Key reused for another request"},
        422: {"description": "More than the order's total, or another currency"},
    },
)
async def refund(
    request: RefundRequest, key: IdempotencyKey, store: StoreDep, caller: CallerDep
) -> JSONResponse:
    """Refund (part of) an order of the caller's tenant, once per idempotency key."""
    order = find_order(caller.tenant, request.order_id)
    if order is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {request.order_id} not found")
    if request.currency != order.currency or request.amount > order.total:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"order {order.order_id} can be refunded at most {order.total:g} {order.currency}",
        )

    def create() -> Effect:
        refund_id = f"RF-{uuid.uuid4().hex[:12].upper()}"
        done = Refund(refund_id=refund_id, amount=request.amount)
        return Effect(id=refund_id, response=done.model_dump(mode="json"))

    return stored_response(
        store.perform(
            kind="refund",
            key=key,
            tenant=caller.tenant,
            principal=caller.principal,
            endpoint="POST /payments/refunds",
            body=request.model_dump(mode="json"),
            effect=create,
        )
    )
