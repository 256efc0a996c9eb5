"""Webhook signatures: a receiver accepts what delivery signs and nothing else."""

from __future__ import annotations

import pytest
from pactmesh_contracts.webhooks import SignatureError, sign, verify

BODY = b'{"type":"workflow.result.v1"}'


def test_a_signed_body_verifies() -> None:
    header = sign("s3cret", BODY, timestamp=1_700_000_000)
    assert verify("s3cret", header, BODY, now=1_700_000_010) == 1_700_000_000


@pytest.mark.parametrize(
    ("secret", "body", "now", "message"),
    [
        ("other", BODY, 1_700_000_000, "does not match"),
        ("s3cret", BODY + b" ", 1_700_000_000, "does not match"),
        ("s3cret", BODY, 1_700_000_301, "outside the tolerance"),
    ],
    ids=["wrong-secret", "tampered-body", "replayed-late"],
)
def test_a_wrong_secret_a_changed_body_or_a_stale_timestamp_fails(
    secret: str, body: bytes, now: int, message: str
) -> None:
    header = sign("s3cret", BODY, timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match=message):
        verify(secret, header, body, now=now)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=1700000000", "t=x,v1=abc"])
def test_missing_or_malformed_headers_fail(header: str | None) -> None:
    with pytest.raises(SignatureError, match=r"missing|malformed"):
        verify("s3cret", header, BODY, now=1_700_000_000)


def test_any_of_several_macs_may_match_during_rotation() -> None:
    new = sign("new", BODY, timestamp=1_700_000_000)
    old_mac = sign("old", BODY, timestamp=1_700_000_000).split("v1=")[1]
    assert verify("old", f"{new},v1={old_mac}", BODY, now=1_700_000_000)
