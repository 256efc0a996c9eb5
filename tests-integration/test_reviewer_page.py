"""Reviewers at work on the real mesh: a person approves a refund on the reviewer page
in headless Chromium (Debian's package, driven by Playwright), and two reviewers racing
for one review end with exactly one decision and one ReviewDecided event."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from pactmesh_contracts.topics import REVIEWS_DECIDED
from pactmesh_harness.mesh import REPO, Mesh, wait_for
from pactmesh_harness.workflow_client import (
    claim,
    decide,
    entries_for,
    finished,
    pending_review,
    review_history,
    reviewer,
    submit,
)
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM_SH = REPO / "infra" / "browser" / "chromium.sh"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from Debian's package (installed by chromium.sh when missing);
    Playwright drives it and never downloads a browser of its own."""
    executable = subprocess.run(
        [str(CHROMIUM_SH), "path"], check=True, capture_output=True, text=True, timeout=600
    ).stdout.strip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            # the browser logs every refused fetch; the tests provoke some on purpose
            if message.type == "error"
            and "the server responded with a status of 4" not in message.text
            else None
        ),
    )
    try:
        yield opened
    finally:
        context.close()
    # Script errors or refused loads (CSP, missing assets) would show here.
    assert problems == []


def test_a_reviewer_approves_a_refund_on_the_reviewer_page(mesh: Mesh, page: Page) -> None:
    rid = submit(
        mesh,
        "I want a refund of $500 for order 2002, the monitor arrived broken",
        scopes=("workflow:refund",),
    )
    review = pending_review(mesh, rid)
    assert review["rule"] == "refund.amount_over_auto_limit"
    assert review["required_role"] == "support-lead"
    assert entries_for(mesh, rid) == [], "nothing is paid before approval"
    token = reviewer(mesh, ("support-lead",), subject="lena@example.com")["Authorization"]

    page.goto(f"{mesh.url('hitl')}/reviewer")
    page.fill("#token", token)
    page.click("#save-token")
    expect(page.locator("#whoami")).to_contain_text("lena@example.com")
    row = page.locator(f'tr[data-review-id="{review["review_id"]}"]')
    expect(row).to_contain_text("refund.amount_over_auto_limit")
    row.click()
    expect(page.locator("#detail-summary")).to_have_text(review["summary"])
    assert json.loads(page.text_content("#detail-action") or "") == review["proposed_action"]
    # Beside the review, what the agent did: the routing model's call, the order looked up.
    timeline = page.locator("#timeline")
    expect(timeline.locator('li[data-type="model.called"]')).to_contain_text("routing.decision")
    expect(timeline.locator('li[data-type="tool.called"]')).to_contain_text("crm.get_order")
    expect(timeline.locator('li[data-type="gate.fired"]')).to_contain_text(review["rule"])

    page.click("#claim")
    expect(page.locator("#message")).to_contain_text("Claim: done.")
    expect(page.locator("#detail-facts")).to_contain_text("lena@example.com until")

    page.click("#edit-box summary")  # an invalid edit is refused with its field errors
    page.fill("#edit-json", json.dumps({**review["proposed_action"], "amount": "lots"}))
    page.click("#submit-edit")
    expect(page.locator("#message")).to_contain_text("edited_action.amount")
    expect(page.locator("#detail-state")).to_have_text("pending")

    page.fill("#comment", "regular customer, monitor photo attached")
    page.click("#approve")
    expect(page.locator("#message")).to_contain_text("Approve: done.")
    expect(page.locator("#detail-state")).to_have_text("decided")
    expect(page.locator("#history")).to_contain_text("decided by lena@example.com")
    page.screenshot(path=str(mesh.data_dir / "reviewer-page.png"), full_page=True)

    values = finished(mesh, rid)
    assert values["outcome"] == "succeeded", values.get("error")
    assert values["approval"]["reviewer"] == "lena@example.com"
    assert [e["kind"] for e in entries_for(mesh, rid)] == ["refund"]
    decided = review_history(mesh, review["review_id"])[-1]
    assert (decided["action"], decided["actor"]) == ("decided", "lena@example.com")
    assert decided["detail"]["comment"] == "regular customer, monitor photo attached"


def test_the_page_shows_why_a_reviewer_without_the_role_cannot_decide(
    mesh: Mesh, page: Page
) -> None:
    rid = submit(
        mesh,
        "Please raise a purchase order for 25 laptops from Acme, about $30,000",
        scopes=("workflow:procurement",),
    )
    review = pending_review(mesh, rid)
    token = reviewer(mesh, ("support-lead",), subject="lena@example.com")["Authorization"]

    page.goto(f"{mesh.url('hitl')}/reviewer")
    page.fill("#token", token)
    page.click("#save-token")
    page.locator(f'tr[data-review-id="{review["review_id"]}"]').click()
    page.click("#approve")

    expect(page.locator("#message")).to_contain_text("Not allowed")
    expect(page.locator("#message")).to_contain_text("procurement-manager")
    expect(page.locator("#detail-state")).to_have_text("pending")
    assert decide(mesh, review["review_id"], "reject", roles=["procurement-manager"]).is_success


# -- racing reviewers ---------------------------------------------------------------------


async def _decisions_for(mesh: Mesh, review_id: str) -> list[dict[str, Any]]:
    """Every ReviewDecided event for ``review_id`` on the topic, read from the start."""
    topic = REVIEWS_DECIDED.qualified(mesh.prefix)
    consumer = AIOKafkaConsumer(
        topic,
        **mesh.kafka_options(),
        group_id=None,  # no group: every partition, nothing committed
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        found = []
        async with asyncio.timeout(30):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)  # lets the assignment happen
            await consumer.seek_to_beginning()
            ends = await consumer.end_offsets(list(consumer.assignment()))
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        event = json.loads(record.value or b"{}")
                        if event.get("payload", {}).get("review_id") == review_id:
                            found.append(event)
        return found
    finally:
        await consumer.stop()


def _decided_events(mesh: Mesh, review_id: str) -> list[dict[str, Any]]:
    """``_decisions_for`` on a thread of its own: Playwright's sync API keeps an event loop
    running on this one while the module's browser is open."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _decisions_for(mesh, review_id)).result(timeout=60)


def _race(*calls: Any) -> list[httpx.Response]:
    """Run the calls at the same time (one thread each) and return their responses."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [f.result(timeout=30) for f in [pool.submit(call) for call in calls]]


def test_two_reviewers_racing_for_one_review_make_one_decision(mesh: Mesh) -> None:
    rid = submit(
        mesh,
        "Please raise a purchase order for 25 laptops from Acme, about $30,000",
        scopes=("workflow:procurement",),
    )
    review = pending_review(mesh, rid)
    review_id = review["review_id"]
    roles = ["procurement-manager"]

    claims = _race(
        lambda: claim(mesh, review_id, roles=roles, reviewer_id="maria@example.com"),
        lambda: claim(mesh, review_id, roles=roles, reviewer_id="bob@example.com"),
    )
    assert sorted(r.status_code for r in claims) == [200, 409]
    holder = next(r.json()["claimed_by"] for r in claims if r.status_code == 200)
    other = ({"maria@example.com", "bob@example.com"} - {holder}).pop()

    decisions = _race(
        lambda: decide(mesh, review_id, "approve", roles=roles, reviewer_id=holder),
        lambda: decide(mesh, review_id, "reject", roles=roles, reviewer_id=other),
    )
    assert [r.status_code for r in decisions] == [200, 409]  # the holder's, then the other's

    values = finished(mesh, rid)
    assert values["outcome"] == "succeeded"
    assert values["approval"]["reviewer"] == holder
    assert len(entries_for(mesh, rid)) == 1
    events = wait_for(
        lambda: _decided_events(mesh, review_id),
        timeout=30,
        what="the ReviewDecided event",
    )
    assert [(e["payload"]["decision"], e["payload"]["reviewer"]) for e in events] == [
        ("approve", holder)
    ]
    actions = [(h["action"], h["actor"]) for h in review_history(mesh, review_id)]
    assert actions == [("requested", "workflow"), ("claimed", holder), ("decided", holder)]


def test_two_reviewers_deciding_at_once_without_claims_make_one_decision(mesh: Mesh) -> None:
    rid = submit(
        mesh,
        "Please raise a purchase order for 25 laptops from Acme, about $30,000",
        scopes=("workflow:procurement",),
    )
    review_id = pending_review(mesh, rid)["review_id"]
    roles = ["procurement-manager"]

    decisions = _race(
        *(
            lambda who=who, decision=decision: decide(
                mesh, review_id, decision, roles=roles, reviewer_id=who
            )
            for who, decision in (("maria@example.com", "approve"), ("bob@example.com", "reject"))
        )
    )

    assert sorted(r.status_code for r in decisions) == [200, 409]
    won = next(r.json() for r in decisions if r.status_code == 200)
    values = finished(mesh, rid)
    assert values["outcome"] == ("succeeded" if won["decision"] == "approve" else "rejected")
    events = wait_for(
        lambda: _decided_events(mesh, review_id),
        timeout=30,
        what="the ReviewDecided event",
    )
    assert [(e["payload"]["decision"], e["payload"]["reviewer"]) for e in events] == [
        (won["decision"], won["decided_by"])
    ]


def test_the_python_reviewer_client_works_a_review_through_the_real_api(mesh: Mesh) -> None:
    """pactmesh_client.ReviewerClient against the running hitl: find the review among
    the pending ones, claim it (a second reviewer is refused), have an invalid edit
    refused with field errors, approve, read the history. (Run on a thread of its own:
    this module's Playwright browser keeps an event loop running on the main one.)"""
    from pactmesh_client import Conflict, ReviewerClient, ValidationFailed

    rid = submit(
        mesh,
        "Please raise a purchase order for 25 laptops from Acme, about $30,000",
        scopes=("workflow:procurement",),
    )
    review_id = pending_review(mesh, rid)["review_id"]

    def token(subject: str) -> str:
        header = reviewer(mesh, ("procurement-manager",), subject=subject)
        return header["Authorization"].removeprefix("Bearer ")

    async def work() -> list[Any]:
        url = mesh.url("hitl")
        async with (
            ReviewerClient(url, token=token("ines@example.com")) as ines,
            ReviewerClient(url, token=token("omar@example.com")) as omar,
        ):
            found = [r async for r in ines.pending(workflow="procurement", limit=2)]
            mine = next(r for r in found if str(r.review_id) == review_id)
            assert mine.required_role == "procurement-manager"
            claimed = await ines.claim(mine.review_id)
            assert claimed is not None
            assert claimed.claimed_by == "ines@example.com"
            with pytest.raises(Conflict):
                await omar.claim(mine.review_id)
            with pytest.raises(ValidationFailed) as refused:
                await ines.edit(mine.review_id, {**mine.proposed_action, "amount": -5})
            assert refused.value.field_errors
            decided = await ines.approve(mine.review_id, comment="within budget")
            assert decided is not None
            assert decided.state == "decided"
            history = await ines.history(mine.review_id)

        return history

    with ThreadPoolExecutor(max_workers=1) as pool:
        history = pool.submit(asyncio.run, work()).result(timeout=90)

    actions = [entry.action for entry in history]
    assert actions[0] == "requested"
    assert "claimed" in actions
    assert actions[-1] == "decided"
    assert history[-1].actor == "ines@example.com"
    assert finished(mesh, rid)["outcome"] == "succeeded"
