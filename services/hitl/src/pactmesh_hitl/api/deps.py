"""What the reviewer API's routes are handed: the runtime, the store, the caller, the
review."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends
from pactmesh_kit.app import get_runtime
from pactmesh_kit.auth.http import AuthenticatorDep, CurrentPrincipal, forbid, require
from pactmesh_kit.auth.tokens import Identity

from pactmesh_hitl.domain.errors import ReviewError
from pactmesh_hitl.domain.reviews import Review, ReviewStore
from pactmesh_hitl.runtime import Runtime

__all__ = [
    "REVIEW_ACTIONS",
    "AuthenticatorDep",
    "CurrentPrincipal",
    "CurrentReader",
    "ReviewDep",
    "RuntimeDep",
    "StoreDep",
    "check_may_review",
]

REVIEW_ACTIONS = ("approve", "reject", "edit")

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_store(runtime: RuntimeDep) -> ReviewStore:
    """The open review store."""
    return runtime.require_store()


StoreDep = Annotated[ReviewStore, Depends(get_store)]
CurrentReader = Annotated[Identity, Depends(require("reviews:read"))]
"""A caller who may read reviews (of their own tenant)."""


async def get_review(review_id: uuid.UUID, reader: CurrentReader, store: StoreDep) -> Review:
    """The review named in the path, if it belongs to the caller's tenant.

    Another tenant's review is a 404, exactly like a missing one: a reviewer learns
    nothing about reviews outside their tenant, not even that they exist.
    """
    review = await store.get(review_id)
    if review is None or review.tenant != reader.tenant:
        raise ReviewError("not_found", f"no review {review_id}")
    return review


ReviewDep = Annotated[Review, Depends(get_review)]


def check_may_review(
    authenticator: AuthenticatorDep, identity: Identity, review: Review, actions: tuple[str, ...]
) -> None:
    """403 unless the caller holds the gate's role and the policy grants one of ``actions``."""
    policy = authenticator.policy
    if not any(
        policy.may_review(identity.principal, action, gate_role=review.required_role)
        for action in actions
    ):
        raise forbid(
            f"{' or '.join(actions)} on this review needs the role {review.required_role!r}"
            " and that review action in the access policy"
        )
