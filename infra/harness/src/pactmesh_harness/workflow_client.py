"""What the workflow tests do to the mesh from outside: submit, wait, stream, review,
inspect. ``intake`` and ``hitl`` name the instance to ask (``intake-2``…) when a mesh
runs several."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from pactmesh_harness.mesh import Mesh, wait_for

TERMINAL = {"delivered"}


TENANT = "default"
"""The tenant the workflow tests submit for (and read back as)."""


def requester(mesh: Mesh, *, scopes: tuple[str, ...] = (), tenant: str = TENANT) -> dict[str, str]:
    """A requester's ``Authorization`` header: support-triage, plus the workflows that
    ``scopes`` grant (``workflow:refund``...)."""
    return mesh.bearer(tenant=tenant, roles=("requester",), scopes=scopes)


def submit(
    mesh: Mesh,
    text: str,
    workflow: str | None = None,
    *,
    scopes: tuple[str, ...] = (),
    tenant: str = TENANT,
    intake: str = "intake",
    timeout: float = 10,
) -> uuid.UUID:
    """POST a request as a requester; its id. A named ``workflow`` is granted by scope;
    a text that routing should send to another workflow than support-triage needs
    that workflow's scope in ``scopes``. ``timeout`` bounds the wait for the answer
    (which follows the broker's acknowledgement of the accepted request)."""
    body: dict[str, Any] = {"text": text}
    if workflow:
        body["requested_workflow"] = workflow
        scopes = (*scopes, f"workflow:{workflow}")
    response = httpx.post(
        f"{mesh.url(intake)}/v1/requests",
        json=body,
        headers=requester(mesh, scopes=scopes, tenant=tenant),
        timeout=timeout,
    )
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["request_id"])


def status(
    mesh: Mesh,
    request_id: uuid.UUID,
    *,
    tenant: str = TENANT,
    missing_ok: bool = False,
    intake: str = "intake",
) -> dict[str, Any]:
    """The request's status view, read as its tenant (``{}`` for an unknown request
    when ``missing_ok``)."""
    response = httpx.get(
        f"{mesh.url(intake)}/v1/requests/{request_id}",
        headers=requester(mesh, tenant=tenant),
        timeout=10,
    )
    if missing_ok and response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    return dict(response.json())


def events(
    mesh: Mesh,
    request_id: uuid.UUID | str,
    *,
    tenant: str = TENANT,
    read_s: float = 60,
    intake: str = "intake",
) -> list[tuple[str, dict[str, Any]]]:
    """Every server-sent event of the request's stream (``GET /v1/requests/{id}/events``
    on the instance ``intake``, as a requester of ``tenant``), as (event, data), until
    the server ends it."""
    found: list[tuple[str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    url = f"{mesh.url(intake)}/v1/requests/{request_id}/events"
    timeout = httpx.Timeout(10, read=read_s)
    with httpx.stream("GET", url, headers=requester(mesh, tenant=tenant), timeout=timeout) as sse:
        assert sse.status_code == 200, sse.read()
        for line in sse.iter_lines():
            if not line:
                if "event" in fields:
                    found.append((fields["event"], json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):  # ": ping" keep-alives are comments
                name, _, value = line.partition(": ")
                fields[name] = value
    return found


def wait_status(
    mesh: Mesh,
    request_id: uuid.UUID,
    wanted: str,
    timeout: float = 60,
    *,
    tenant: str = TENANT,
    intake: str = "intake",
) -> dict[str, Any]:
    """Poll until the request reaches ``wanted``."""

    def reached() -> dict[str, Any] | None:
        # A request published on the inbound topic is unknown (404) until intake reads it.
        view = status(mesh, request_id, tenant=tenant, missing_ok=True, intake=intake)
        return view if view.get("status") == wanted else None

    return wait_for(reached, timeout=timeout, interval=0.2, what=f"{request_id} {wanted}")


def run(mesh: Mesh, request_id: uuid.UUID, *, tenant: str = TENANT) -> dict[str, Any]:
    """The orchestrator's view of the run, read as a requester of its tenant."""
    response = httpx.get(
        f"{mesh.url('orchestrator')}/v1/workflows/runs/{request_id}",
        headers=requester(mesh, tenant=tenant),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def finished(
    mesh: Mesh, request_id: uuid.UUID, timeout: float = 60, *, tenant: str = TENANT
) -> dict[str, Any]:
    """Wait for delivery; the run's final values."""
    wait_status(mesh, request_id, "delivered", timeout, tenant=tenant)
    return dict(run(mesh, request_id, tenant=tenant)["values"])


REVIEWER_TENANT = TENANT
"""Reviewers work in the tenant the workflow tests submit for."""


def reviewer(
    mesh: Mesh,
    roles: tuple[str, ...] | list[str] = ("reviewer",),
    *,
    subject: str = "alice@example.com",
    tenant: str = REVIEWER_TENANT,
) -> dict[str, str]:
    """An Authorization header for a reviewer of ``tenant`` holding ``roles``."""
    return mesh.bearer(tenant=tenant, roles=tuple(roles), subject=subject)


def reviews(
    mesh: Mesh,
    *,
    tenant: str = REVIEWER_TENANT,
    max_pages: int = 50,
    hitl: str = "hitl",
    **params: Any,
) -> list[dict[str, Any]]:
    """Every review of ``tenant`` matching ``params`` (pending by default), page by page."""
    found: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 200, **params}
    for _ in range(max_pages):
        response = httpx.get(
            f"{mesh.url(hitl)}/v1/reviews",
            params=query,
            headers=reviewer(mesh, tenant=tenant),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["items"]
        if not page["next_cursor"]:
            return found
        query["cursor"] = page["next_cursor"]
    raise AssertionError(f"more than {max_pages} pages of reviews")


def pending_review(
    mesh: Mesh,
    request_id: uuid.UUID,
    timeout: float = 60,
    *,
    tenant: str = REVIEWER_TENANT,
    hitl: str = "hitl",
) -> dict[str, Any]:
    """The review the request's workflow is waiting on."""

    def find() -> dict[str, Any] | None:
        found = reviews(mesh, tenant=tenant, hitl=hitl)
        mine = [r for r in found if r["workflow_id"] == str(request_id)]
        return mine[0] if mine else None

    return wait_for(find, timeout=timeout, interval=0.2, what=f"a review for {request_id}")


def decide(
    mesh: Mesh,
    review_id: str,
    decision: str,
    *,
    roles: list[str],
    comment: str = "",
    edited_action: dict[str, Any] | None = None,
    reviewer_id: str = "alice@example.com",
    tenant: str = REVIEWER_TENANT,
    hitl: str = "hitl",
) -> httpx.Response:
    """POST a decision as ``reviewer_id`` holding ``roles`` (who decides is the token's)."""
    body: dict[str, Any] = {"decision": decision, "comment": comment}
    if edited_action is not None:
        body["edited_action"] = edited_action
    return httpx.post(
        f"{mesh.url(hitl)}/v1/reviews/{review_id}/decision",
        json=body,
        headers=reviewer(mesh, roles, subject=reviewer_id, tenant=tenant),
        timeout=10,
    )


def claim(
    mesh: Mesh,
    review_id: str,
    *,
    roles: list[str],
    reviewer_id: str = "alice@example.com",
    tenant: str = REVIEWER_TENANT,
) -> httpx.Response:
    """POST a claim on the review as ``reviewer_id``."""
    return httpx.post(
        f"{mesh.url('hitl')}/v1/reviews/{review_id}/claim",
        headers=reviewer(mesh, roles, subject=reviewer_id, tenant=tenant),
        timeout=10,
    )


def review_history(
    mesh: Mesh, review_id: str, *, tenant: str = REVIEWER_TENANT
) -> list[dict[str, Any]]:
    """The review's history entries."""
    response = httpx.get(
        f"{mesh.url('hitl')}/v1/reviews/{review_id}/history",
        headers=reviewer(mesh, tenant=tenant),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return list(response.json())


def ledger(mesh: Mesh, kind: str | None = None) -> list[dict[str, Any]]:
    """The sandbox's side-effect ledger."""
    params: dict[str, Any] = {"limit": 10_000}
    if kind:
        params["kind"] = kind
    response = httpx.get(f"{mesh.sandbox_url}/ledger", params=params, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    return list(body["entries"] if isinstance(body, dict) else body)


def entries_for(mesh: Mesh, request_id: uuid.UUID) -> list[dict[str, Any]]:
    """Ledger entries whose idempotency key belongs to this request."""
    return [e for e in ledger(mesh) if e["idempotency_key"].startswith(f"{request_id}:")]


def fault(mesh: Mesh, backend: str, **config: Any) -> None:
    """Switch a fault on in the sandbox."""
    response = httpx.put(f"{mesh.sandbox_url}/faults/{backend}", json=config, timeout=10)
    assert response.status_code in (200, 204), response.text


def clear_faults(mesh: Mesh) -> None:
    """Switch every fault off."""
    assert httpx.delete(f"{mesh.sandbox_url}/faults", timeout=10).status_code in (200, 204)


def history_events(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(step, event) pairs of a run's history."""
    return [(h["step"], h["event"]) for h in values.get("history", [])]


def cheap_shipment(mesh: Mesh) -> str:
    """A shipment whose cheapest alternative route (northwind or oceanic) costs at most
    1400, under the reroute gate's 500 increase over the 1000 baseline: rerouting it
    needs no approval."""
    for n in range(1, 300):
        costs = [
            httpx.post(
                f"{mesh.sandbox_url}/carriers/{carrier}/quotes",
                json={"shipment_id": f"SH-{n}"},
                timeout=10,
            ).json()["cost"]
            for carrier in ("northwind", "oceanic")
        ]
        if min(costs) <= 1400:
            return f"SH-{n}"
    raise AssertionError("no cheap shipment in SH-1..SH-299")
