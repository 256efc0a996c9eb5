"""What the workflow tests do to the mesh from outside: submit, wait, review, inspect."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from harness import Mesh, wait_for

TERMINAL = {"delivered"}


def submit(mesh: Mesh, text: str, workflow: str | None = None) -> uuid.UUID:
    """POST a request; its id."""
    body: dict[str, Any] = {"text": text}
    if workflow:
        body["requested_workflow"] = workflow
    response = httpx.post(f"{mesh.url('intake')}/v1/requests", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["request_id"])


def status(mesh: Mesh, request_id: uuid.UUID) -> dict[str, Any]:
    """The request's status view."""
    return dict(httpx.get(f"{mesh.url('intake')}/v1/requests/{request_id}", timeout=10).json())


def wait_status(
    mesh: Mesh, request_id: uuid.UUID, wanted: str, timeout: float = 60
) -> dict[str, Any]:
    """Poll until the request reaches ``wanted``."""
    return wait_for(
        # A request published on the inbound topic is unknown (404) until intake reads it.
        lambda: (view := status(mesh, request_id)).get("status") == wanted and view,
        timeout=timeout,
        interval=0.2,
        what=f"{request_id} {wanted}",
    )


def run(mesh: Mesh, request_id: uuid.UUID) -> dict[str, Any]:
    """The orchestrator's view of the run."""
    response = httpx.get(f"{mesh.url('orchestrator')}/v1/workflows/runs/{request_id}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def finished(mesh: Mesh, request_id: uuid.UUID, timeout: float = 60) -> dict[str, Any]:
    """Wait for delivery; the run's final values."""
    wait_status(mesh, request_id, "delivered", timeout)
    return dict(run(mesh, request_id)["values"])


def pending_review(mesh: Mesh, request_id: uuid.UUID, timeout: float = 60) -> dict[str, Any]:
    """The review the request's workflow is waiting on."""

    def find() -> dict[str, Any] | None:
        reviews = httpx.get(
            f"{mesh.url('hitl')}/v1/reviews", params={"limit": 200}, timeout=10
        ).json()
        mine = [r for r in reviews if r["workflow_id"] == str(request_id)]
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
    reviewer: str = "alice@example.com",
) -> httpx.Response:
    """POST a decision."""
    body: dict[str, Any] = {
        "decision": decision,
        "reviewer": reviewer,
        "roles": roles,
        "comment": comment,
    }
    if edited_action is not None:
        body["edited_action"] = edited_action
    return httpx.post(f"{mesh.url('hitl')}/v1/reviews/{review_id}/decision", json=body, timeout=10)


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
