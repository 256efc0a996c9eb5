"""Fixtures: a small stand-in for the hitl reviewer API, with its routes' shapes and
status codes, so that the client is tested on its own (hitl has its own tests)."""

# No `from __future__ import annotations`: FastAPI must resolve the routes' annotations,
# which name dependencies local to `fake_reviewer_api`.
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pactmesh_client import ReviewerClient
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError

TOKENS = {"alice-token": "alice", "bob-token": "bob", "auditor-token": "auditor"}
"""Bearer tokens the fake accepts; the auditor may read but not claim or decide."""


class RefundAction(BaseModel):
    """The action contract edits are validated against."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    amount: PositiveFloat
    currency: Literal["USD", "EUR"]


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject", "edit"]
    edited_action: dict[str, Any] | None = None
    comment: str = Field("", max_length=4000)


@dataclass
class FakeReviews:
    """The reviews the fake serves, and the requests it received."""

    reviews: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    repeat_cursor: bool = False
    """Misbehave: hand out the same cursor forever."""

    def add(self, workflow: str, *, age_s: float, state: str = "pending") -> str:
        review_id = str(uuid.uuid4())
        self.reviews[review_id] = {
            "review_id": review_id,
            "workflow_id": str(uuid.uuid4()),
            "workflow": workflow,
            "tenant": "acme",
            "rule": f"{workflow}.rule",
            "summary": f"a {workflow} review",
            "action_type": "refund.v1",
            "proposed_action": {"order_id": "4411", "amount": 700.0, "currency": "USD"},
            "required_role": "reviewer",
            "priority": "high" if workflow == "refund" else "normal",
            "requested_at": (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat(),
            "state": state,
            "claimed_by": None,
            "sla": "4h",  # a field the client does not know
        }
        self.history[review_id] = [{"at": datetime.now(UTC).isoformat(), "action": "requested"}]
        return review_id

    def record(self, review_id: str, actor: str, action: str, comment: str = "") -> None:
        self.history[review_id].append(
            {
                "at": datetime.now(UTC).isoformat(),
                "actor": actor,
                "action": action,
                "comment": comment,
            }
        )


def fake_reviewer_api(state: FakeReviews) -> FastAPI:
    app = FastAPI()
    bearer = HTTPBearer(auto_error=False)

    async def reviewer(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        if credentials is None or credentials.credentials not in TOKENS:
            raise HTTPException(401, "bearer token required", {"WWW-Authenticate": "Bearer"})
        return TOKENS[credentials.credentials]

    def deciding(who: Annotated[str, Depends(reviewer)]) -> str:
        if who == "auditor":
            raise HTTPException(403, "'reviews:decide' is not granted to this token")
        return who

    def pending(review_id: uuid.UUID, who: str) -> dict[str, Any]:
        review = state.reviews.get(str(review_id))
        if review is None:
            raise HTTPException(404, f"no review {review_id}")
        if review["state"] != "pending":
            raise HTTPException(409, f"review {review_id} is {review['state']}")
        if review["claimed_by"] not in (None, who):
            raise HTTPException(409, f"review {review_id} is claimed by {review['claimed_by']}")
        return review

    @app.middleware("http")
    async def log(request: Any, call_next: Any) -> Any:
        auth = request.headers.get("authorization", "")
        state.requests.append((request.method, str(request.url), {"authorization": auth}))
        return await call_next(request)

    @app.get("/v1/reviews")
    async def list_reviews(
        who: Annotated[str, Depends(reviewer)],
        state_: Annotated[str | None, Query(alias="state")] = None,
        workflow: str | None = None,
        priority: str | None = None,
        min_age_s: Annotated[float | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        matching = [
            r
            for r in state.reviews.values()
            if (state_ is None or r["state"] == state_)
            and (workflow is None or r["workflow"] == workflow)
            and (priority is None or r["priority"] == priority)
            and (
                min_age_s is None
                or (now - datetime.fromisoformat(r["requested_at"])).total_seconds() >= min_age_s
            )
        ]
        start = int(cursor or 0)
        items = matching[start : start + limit]
        more = start + limit < len(matching)
        next_cursor = "0" if state.repeat_cursor else (str(start + limit) if more else None)
        return {"items": items, "next_cursor": next_cursor}

    @app.get("/v1/reviews/{review_id}")
    async def get_review(review_id: uuid.UUID, who: Annotated[str, Depends(reviewer)]) -> Any:
        if str(review_id) not in state.reviews:
            raise HTTPException(404, f"no review {review_id}")
        return state.reviews[str(review_id)]

    @app.post("/v1/reviews/{review_id}/claim")
    async def claim(review_id: uuid.UUID, who: Annotated[str, Depends(deciding)]) -> Any:
        review = pending(review_id, who)
        review["claimed_by"] = who
        state.record(str(review_id), who, "claimed")
        return review

    @app.delete("/v1/reviews/{review_id}/claim", status_code=204)
    async def release(review_id: uuid.UUID, who: Annotated[str, Depends(deciding)]) -> Response:
        review = pending(review_id, who)
        if review["claimed_by"] != who:
            raise HTTPException(409, "not claimed by you")
        review["claimed_by"] = None
        state.record(str(review_id), who, "released")
        return Response(status_code=204)

    @app.post("/v1/reviews/{review_id}/decision")
    async def decide(
        review_id: uuid.UUID, body: DecisionBody, who: Annotated[str, Depends(deciding)]
    ) -> Any:
        review = pending(review_id, who)
        if body.decision == "edit":
            try:
                RefundAction.model_validate(body.edited_action or {})
            except ValidationError as exc:
                raise RequestValidationError(
                    [{**e, "loc": ("body", "edited_action", *e["loc"])} for e in exc.errors()]
                ) from exc
        review.update(state="decided", decision=body.decision, decided_by=who, comment=body.comment)
        if body.edited_action is not None:
            review["edited_action"] = body.edited_action
        state.record(str(review_id), who, body.decision, body.comment)
        return review

    @app.get("/v1/reviews/{review_id}/history")
    async def history(review_id: uuid.UUID, who: Annotated[str, Depends(reviewer)]) -> Any:
        if str(review_id) not in state.history:
            raise HTTPException(404, f"no review {review_id}")
        return {"items": state.history[str(review_id)]}

    return app


@pytest.fixture
def fake() -> FakeReviews:
    """The fake API's state: five pending reviews (three refunds, two procurements, the
    oldest first) and one decided."""
    state = FakeReviews()
    for i in range(3):
        state.add("refund", age_s=600 - i)
        state.add("procurement", age_s=300 - i)
    del state.reviews[next(r for r, v in state.reviews.items() if v["workflow"] == "procurement")]
    state.add("refund", age_s=10, state="decided")
    return state


@pytest.fixture
async def reviewer(fake: FakeReviews) -> AsyncIterator[Callable[..., ReviewerClient]]:
    """Make a client of the fake API with a token (``alice-token`` by default)."""
    made: list[ReviewerClient] = []
    transport = httpx.ASGITransport(app=fake_reviewer_api(fake))

    def make(token: str | Callable[[], str] = "alice-token") -> ReviewerClient:
        client = ReviewerClient("http://hitl.test", token=token, transport=transport)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()
