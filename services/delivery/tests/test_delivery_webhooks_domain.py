"""The retry schedule and the registration contract."""

from __future__ import annotations

import random

import pytest
from pactmesh_delivery.domain.webhooks import RetryPolicy, WebhookCreate, matches, new_secret
from pactmesh_delivery.settings import Settings
from pydantic import ValidationError


@pytest.fixture
def widest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every random pause takes the top of its window."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)


def test_retry_windows_double_from_the_base_up_to_the_cap(widest: None) -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=10.0)
    assert [policy.delay_after(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_windows_stay_capped_far_out(widest: None) -> None:
    assert RetryPolicy(base_s=1.0, cap_s=300.0).delay_after(5_000) == 300.0


def test_full_jitter_draws_anywhere_in_the_window() -> None:
    random.seed(7)
    policy = RetryPolicy(base_s=1.0, cap_s=60.0)
    for attempt, window in ((1, 1.0), (3, 4.0), (9, 60.0)):
        delays = [policy.delay_after(attempt) for _ in range(400)]
        assert all(0.0 <= d <= window for d in delays)
        assert min(delays) < 0.1 * window  # the window starts at zero, not at a floor
        assert max(delays) > 0.9 * window


def test_attempts_run_out_at_the_maximum() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]
    assert policy.lease_s > policy.attempt_timeout_s


def test_settings_describe_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACTMESH_DELIVERY_WEBHOOK_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("PACTMESH_DELIVERY_WEBHOOK_BACKOFF_BASE_S", "0.05")
    monkeypatch.setenv("PACTMESH_DELIVERY_WEBHOOK_BACKOFF_CAP_S", "0.2")
    monkeypatch.setenv("PACTMESH_DELIVERY_WEBHOOK_TIMEOUT_S", "2")
    assert Settings().retry_policy == RetryPolicy(
        max_attempts=3, base_s=0.05, cap_s=0.2, attempt_timeout_s=2.0
    )


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example/in", "hooks.example/in", "https://", "javascript:alert(1)", ""],
)
def test_only_absolute_http_urls_register(url: str) -> None:
    with pytest.raises(ValidationError):
        WebhookCreate.model_validate({"url": url})


def test_workflows_must_be_known_and_are_deduplicated() -> None:
    spec = WebhookCreate.model_validate(
        {"url": "http://127.0.0.1:9/in", "workflows": ["refund", "procurement", "refund"]}
    )
    assert spec.workflows == ["procurement", "refund"]
    with pytest.raises(ValidationError, match="unknown workflows"):
        WebhookCreate.model_validate({"url": "https://h.example", "workflows": ["teleport"]})


def test_no_workflows_means_all_of_them() -> None:
    assert matches([], "refund")
    assert matches(["refund"], "refund")
    assert not matches(["procurement"], "refund")


def test_secrets_are_fresh_and_long() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert min(len(s) for s in secrets) >= 43
