"""The CRM: orders."""

from fastapi import APIRouter, HTTPException, status

from pactmesh_sandbox.api.deps import CallerDep
from pactmesh_sandbox.catalog import order as find_order
from pactmesh_sandbox.models import Order

router = APIRouter(prefix="/crm", tags=["crm"])


@router.get("/orders/{order_id}", responses={404: {"description": "No such order"}})
async def get_order(order_id: str, caller: CallerDep) -> Order:
    """One order of the caller's tenant (another tenant's is not found)."""
    order = find_order(caller.tenant, order_id)
    if order is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id} not found")
    return order
