"""The carriers: quotes, and bookings (a side effect)."""

import uuid

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse

from pactmesh_sandbox.api.deps import CallerDep, IdempotencyKey, StoreDep, stored_response
from pactmesh_sandbox.catalog import CARRIERS, quote
from pactmesh_sandbox.models import Booking, BookingRequest, Quote, QuoteRequest
from pactmesh_sandbox.store import Effect

router = APIRouter(prefix="/carriers/{carrier}", tags=["carriers"])


def _known(carrier: str) -> str:
    if carrier not in CARRIERS:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"carrier {carrier} not found (known: {', '.join(CARRIERS)})",
        )
    return carrier


@router.post("/quotes", responses={404: {"description": "No such carrier"}})
async def create_quote(carrier: str, request: QuoteRequest) -> Quote:
    """The carrier's quote for a shipment, the same every time it is asked."""
    return quote(carrier=_known(carrier), shipment_id=request.shipment_id)


@router.post(
    "/bookings",
    status_code=status.HTTP_201_CREATED,
    response_model=Booking,
    responses={
        404: {"description": "No such carrier"},
        409: {"description": "Idempotency-Key reused for another request"},
        422: {"description": "Not this carrier's quote for the shipment, or another cost"},
    },
)
async def book(
    carrier: str, booking: BookingRequest, key: IdempotencyKey, store: StoreDep, caller: CallerDep
) -> JSONResponse:
    """Book a shipment on a quote, once per idempotency key."""
    offered = quote(carrier=_known(carrier), shipment_id=booking.shipment_id)
    if (booking.quote_id, booking.cost) != (offered.quote_id, offered.cost):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{carrier} offered {offered.quote_id} at {offered.cost:g} for shipment "
            f"{booking.shipment_id}, not {booking.quote_id} at {booking.cost:g}",
        )

    def create() -> Effect:
        booking_id = f"BK-{uuid.uuid4().hex[:12].upper()}"
        booked = Booking(booking_id=booking_id, carrier=carrier, cost=booking.cost)
        return Effect(id=booking_id, response=booked.model_dump(mode="json"))

    return stored_response(
        store.perform(
            kind="booking",
            key=key,
            tenant=caller.tenant,
            principal=caller.principal,
            endpoint=f"POST /carriers/{carrier}/bookings",
            body=booking.model_dump(mode="json"),
            effect=create,
        )
    )
