"""How a request's status moves: never back out of a terminal status."""

from __future__ import annotations

import pytest
from pactmesh_contracts.events import RequestStatus as S
from pactmesh_intake.domain.requests import next_status

TERMINAL = (S.COMPLETED, S.FAILED, S.DELIVERED)
LIVE = (S.ACCEPTED, S.ROUTED, S.RUNNING, S.WAITING_FOR_TOOL, S.WAITING_FOR_REVIEW)


def test_terminal_statuses() -> None:
    assert {s for s in S if s.is_terminal} == set(TERMINAL)


@pytest.mark.parametrize("current", LIVE)
@pytest.mark.parametrize("proposed", list(S))
def test_a_live_request_takes_any_proposed_status(current: S, proposed: S) -> None:
    assert next_status(current, proposed) is proposed


@pytest.mark.parametrize("current", [S.COMPLETED, S.FAILED])
@pytest.mark.parametrize("proposed", [s for s in S if s is not S.DELIVERED])
def test_a_finished_request_never_regresses(current: S, proposed: S) -> None:
    assert next_status(current, proposed) is current


@pytest.mark.parametrize("current", [S.COMPLETED, S.FAILED])
def test_delivered_follows_a_finished_request(current: S) -> None:
    assert next_status(current, S.DELIVERED) is S.DELIVERED


@pytest.mark.parametrize("proposed", list(S))
def test_delivered_wins_over_anything_arriving_later(proposed: S) -> None:
    assert next_status(S.DELIVERED, proposed) is S.DELIVERED
