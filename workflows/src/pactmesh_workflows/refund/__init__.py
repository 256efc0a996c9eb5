"""refund: look the order up, validate the proposed amount against the refund policy,
get approval above the automatic limit, then pay it. An amount outside the policy is
never executed: it goes to review with the reason, and only an in-policy edit pays."""

from __future__ import annotations

import re
from typing import Any

from pactmesh_contracts.actions.refund import RefundAction
from pactmesh_contracts.tools.crm import CRM_GET_ORDER
from pactmesh_contracts.tools.payments import PAYMENTS_REFUND
from pydantic import BaseModel, ConfigDict, Field

from pactmesh_workflows.definition import Routing, WorkflowDefinition
from pactmesh_workflows.fields import AMOUNT, IdentifierField
from pactmesh_workflows.gates import Condition, GateSpec, Ref, Threshold

NAME = "refund"


class RefundInput(BaseModel):
    """The order to refund and, when the requester named one, the amount."""

    model_config = ConfigDict(extra="ignore")

    order_id: str = Field(pattern=r"^\d{3,12}$")
    amount: float | None = None


class RefundOutput(BaseModel):
    """The refund that was paid."""

    model_config = ConfigDict(extra="forbid")

    refund_id: str
    order_id: str
    amount: float
    approval: dict[str, Any]


ORDER_ID = IdentifierField(
    "order_id",
    "A customer order number: digits only, for example 4411.",
    "order numbers as digits",
    re.compile(r"\border\s*#?\s*(\d{3,12})\b", re.I),
    pattern=re.compile(r"^\d{3,12}$"),
    example="4411",
    stands_for="order",
)

OUT_OF_POLICY = GateSpec(
    rule="refund.amount_out_of_policy",
    step="check_refund_policy",
    summary="Refund outside policy: {reason}. Edit the amount, or reject.",
    action=RefundAction,
    kind="policy",
    match="any",
    when=(
        Condition(field="amount", op="lte", value=0, says="amount {amount:g} is not positive"),
        Condition(
            field="amount",
            op="gt",
            value=Ref(ref="order_total"),
            says="amount {amount:g} exceeds the order total {order_total:g}",
        ),
        Condition(
            field="amount",
            op="gt",
            value=Threshold(threshold="max_refund"),
            says="amount {amount:g} exceeds the refund limit {max_refund:g}",
        ),
    ),
    fixed={"order_id": "the order"},
    refusal="refund not executed: {reason}",
)
"""Out-of-policy amounts stop for a person; approving them as they are never pays."""

OVER_AUTO_LIMIT = GateSpec(
    rule="refund.amount_over_auto_limit",
    step="approve_refund",
    summary="Refund above the automatic limit",
    action=RefundAction,
    when=(
        Condition(
            field="stated_amount",
            op="gt",
            value=Threshold(threshold="auto_limit"),
            says="amount {stated_amount:g} is over the automatic limit {auto_limit:g}",
        ),
    ),
    missing={"stated_amount": "the amount is neither written in the request nor the order's total"},
)
"""Pays without review only an amount the request states or the CRM's order total (the
out-of-policy gate already held it to the order): never one a model alone came up with."""

WORKFLOW = WorkflowDefinition(
    name=NAME,
    description="Refund within policy; out-of-policy amounts go to review, never paid as-is.",
    package=__name__,
    input_model=RefundInput,
    output_model=RefundOutput,
    actions=(RefundAction,),
    tools=(CRM_GET_ORDER, PAYMENTS_REFUND),
    routing=Routing(
        description="money back for an order, a duplicate or wrong charge, or a faulty item",
        examples=(
            "I'd like a refund for order 5120, the kettle stopped working after two days",
            "You charged my card twice for the same purchase, please give me my money back",
            "The jacket I returned last week still hasn't been credited to my account",
            "Package arrived with the screen cracked. I want to send it back and get reimbursed",
            "Please cancel order 7781 and refund the $89.99 I paid",
            "The item is nothing like the description on your website, I want my money back",
            "I was billed for a renewal after I had already cancelled, refund it please",
            "Wrong size delivered and no exchange is possible, so a refund please",
            "Can I get reimbursed for the late-delivery fee on order 3302?",
        ),
        keywords=(
            (r"\brefund", 3.0),
            (r"money back|\breimburs", 3.0),
            (r"\b(broken|damaged|defective|faulty)\b", 1.5),
            (r"\breturn(ed)?\b", 1.0),
            (
                r"\b(charged?|billed|debited)\b.*\btwice\b|\bovercharged\b|\bcredit(ed)? .*back\b",
                2.0,
            ),
        ),
        fields=(AMOUNT, ORDER_ID),
    ),
    gates=(OUT_OF_POLICY, OVER_AUTO_LIMIT),
)
