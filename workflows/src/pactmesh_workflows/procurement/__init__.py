"""procurement: read a purchase request, check it against policy, report flagged items,
get approval above the threshold, then commit the purchase order in the ERP."""

from __future__ import annotations

import re
from typing import Any

from pactmesh_contracts.actions.procurement import PurchaseOrderAction
from pactmesh_contracts.tools.erp import ERP_CREATE_PURCHASE_ORDER
from pactmesh_contracts.tools.procurement import PROCUREMENT_CHECK_POLICY
from pydantic import BaseModel, ConfigDict, Field

from pactmesh_workflows.definition import Routing, WorkflowDefinition
from pactmesh_workflows.fields import AMOUNT, IdentifierField, NameField
from pactmesh_workflows.gates import Condition, GateSpec, Threshold

NAME = "procurement"


class ProcurementInput(BaseModel):
    """What routing must have extracted from a purchase request."""

    model_config = ConfigDict(extra="ignore")

    amount: float = Field(gt=0, le=100_000_000)
    """The order's total; a request without one cannot be checked against policy."""
    po_number: str | None = None


class ProcurementOutput(BaseModel):
    """The committed order and the flagged-items report."""

    model_config = ConfigDict(extra="forbid")

    po_id: str
    vendor: str
    amount: float
    flagged_items: list[str]
    approval: dict[str, Any]


PO_NUMBER = IdentifierField(
    "po_number",
    "A purchase order number such as PO-1042.",
    "PO-… identifiers as written",
    re.compile(r"\b(PO-\d+)\b", re.I),
    pattern=re.compile(r"^PO-\d+$"),
    example="PO-1042",
    upper=True,
    stands_for="the purchase order",
)
VENDOR = NameField(
    "vendor",
    "The supplier a purchase should go to (procurement only).",
    "the vendor for purchases",
    # A capitalised name after "from", "with", "vendor" or "supplier": "from Acme Corp".
    re.compile(r"\b(?i:from|with|vendor|supplier)[:,]?\s+([A-Z][\w&.-]*(?:\s+[A-Z][\w&.-]*)?)"),
    scoped=True,
)

OVER_THRESHOLD = GateSpec(
    rule="procurement.amount_over_threshold",
    step="approve_purchase_order",
    summary="Purchase order above the approval threshold",
    action=PurchaseOrderAction,
    when=(
        Condition(
            field="stated_amount",
            op="gt",
            value=Threshold(threshold="max_amount"),
            says="amount {stated_amount:g} is over the approval threshold {max_amount:g}",
        ),
    ),
    missing={
        "stated_amount": "the amount is neither written in the request nor the total of"
        " lines priced in it"
    },
)
"""Compares the order's amount only when the request itself states it (or states every
line's quantity and price): an amount only a model extracted cannot wave an order
through, so the gate fires for it."""

WORKFLOW = WorkflowDefinition(
    name=NAME,
    description="Check a purchase request against policy, approve above a threshold, commit it.",
    package=__name__,
    input_model=ProcurementInput,
    output_model=ProcurementOutput,
    actions=(PurchaseOrderAction,),
    tools=(PROCUREMENT_CHECK_POLICY, ERP_CREATE_PURCHASE_ORDER),
    routing=Routing(
        description="buying goods or services, purchase orders, quotes, vendors and contracts",
        examples=(
            "Please raise a purchase order for 12 ergonomic chairs from Steelcase, about $9,600",
            "We need to buy 40 laptops for the new hires before the start of next month",
            "Get quotes from three suppliers for 500 reams of printer paper",
            "Approve PO-2231 for the annual antivirus licence renewal",
            "Order 200 safety helmets for the warehouse team from Uvex",
            "Our contract with the cleaning vendor ends in June; start sourcing a new one",
            "Requisition: replacement batteries for 3 forklifts, budget 15,000 EUR",
            "Can procurement source standing desks for the design floor?",
            "Purchase 10 software seats for the marketing team, $1,800 per year",
        ),
        keywords=(
            (r"\bpurchase order\b|\bPO-?\d+|\bPO\b", 3.0),
            (r"\b(vendor|suppliers?)\b", 1.5),
            (r"\bcontract(or)?\b|\brequisition\b|\btender\b|\bsourc(e|ing)\b", 1.0),
            (r"\b(buy|procure|purchase|purchasing)\b", 2.0),
            (r"\bquotes?\b|\bpricing\b|\bbudget\b|\blicen[cs]es\b", 0.5),
        ),
        fields=(AMOUNT, PO_NUMBER, VENDOR),
    ),
    gates=(OVER_THRESHOLD,),
)
