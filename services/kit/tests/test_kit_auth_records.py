"""Bearer tokens on Kafka records: the HTTP verifier's rules, a cache of verified tokens
that never outlives a token, and dead letters that never keep one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from pactmesh_contracts.envelope import Principal
from pactmesh_kit.auth import AuthError, TokenVerifier
from pactmesh_kit.auth.devissuer import DevIssuer
from pactmesh_kit.auth.records import RecordAuthenticator, authorization, bearer_token
from pactmesh_kit.auth.tokens import StaticKey
from pactmesh_kit.kafka import DeadLetters, Reject, make_broker
from pactmesh_kit.settings import KitSettings

ISS, AUD = "pactmesh-dev", "pactmesh"


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


class CountingVerifier(TokenVerifier):
    """The real verifier, counting signature checks."""

    verified = 0

    def verify(self, token: str) -> Any:
        self.verified += 1
        return super().verify(token)


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "auth", issuer=ISS, audience=AUD)


@pytest.fixture
def verifier(issuer: DevIssuer) -> CountingVerifier:
    return CountingVerifier(
        issuer=ISS, audience=AUD, algorithms=["ES256"], keys=StaticKey(issuer.public_key)
    )


def _token(issuer: DevIssuer, ttl_s: int = 600, **claims: Any) -> str:
    return issuer.mint(
        subject=claims.get("subject", "system:crm"),
        tenant=claims.get("tenant", "acme"),
        roles=("upstream-system",),
        scopes=("workflow:refund",),
        ttl_s=ttl_s,
    )


async def test_a_records_token_proves_its_principal_and_tenant(
    issuer: DevIssuer, verifier: CountingVerifier
) -> None:
    records = RecordAuthenticator(verifier)
    identity = await records.identify([authorization(_token(issuer)), ("x", b"y")])
    assert identity.tenant == "acme"
    assert identity.principal == Principal(
        subject="system:crm", roles=("upstream-system",), scopes=("workflow:refund",)
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (None, "no authorization header"),
        ([("content-type", b"application/json")], "no authorization header"),
        ([("authorization", b"Basic dXNlcjpwdw==")], "not 'Bearer <token>'"),
        ([("Authorization", b"Bearer ")], "not 'Bearer <token>'"),
        ([("authorization", b"Bearer a"), ("authorization", b"Bearer b")], "more than one"),
    ],
)
def test_a_record_without_exactly_one_bearer_token_is_refused(
    headers: list[tuple[str, bytes]] | None, message: str
) -> None:
    with pytest.raises(AuthError, match=message):
        bearer_token(headers)


@pytest.mark.parametrize(
    ("signer_issuer", "signer_audience", "ttl_s", "message"),
    [
        (ISS, AUD, -120, "expired"),
        ("evil", AUD, 600, "another issuer"),
        (ISS, "other", 600, "another audience"),
    ],
)
async def test_the_http_rules_hold_on_records(
    tmp_path: Path,
    verifier: CountingVerifier,
    signer_issuer: str,
    signer_audience: str,
    ttl_s: int,
    message: str,
) -> None:
    signer = DevIssuer(tmp_path / "auth", issuer=signer_issuer, audience=signer_audience)
    with pytest.raises(AuthError, match=message):
        await RecordAuthenticator(verifier).identify([authorization(_token(signer, ttl_s))])


async def test_a_token_of_another_key_is_refused(tmp_path: Path, verifier: Any) -> None:
    stranger = DevIssuer(tmp_path / "elsewhere", issuer=ISS, audience=AUD)
    with pytest.raises(AuthError, match="invalid token"):
        await RecordAuthenticator(verifier).identify([authorization(_token(stranger))])


async def test_a_verified_token_is_remembered_until_it_expires(
    issuer: DevIssuer, verifier: CountingVerifier
) -> None:
    token = _token(issuer, ttl_s=600)
    exp = verifier.verify(token).expires_at
    assert exp is not None
    clock = Clock(exp - 10)
    records = RecordAuthenticator(verifier, clock=clock)
    verifier.verified = 0

    for _ in range(5):
        await records.identify([authorization(token)])
    assert verifier.verified == 1  # the signature is checked once

    clock.now = exp  # from its exp on, the token is checked again (and PyJWT refuses it
    await records.identify([authorization(token)])  # once its exp, not this clock, passed)
    assert verifier.verified == 2


async def test_a_refused_token_is_never_remembered(
    tmp_path: Path, verifier: CountingVerifier
) -> None:
    stranger = DevIssuer(tmp_path / "elsewhere", issuer=ISS, audience=AUD)
    records = RecordAuthenticator(verifier)
    for _ in range(3):
        with pytest.raises(AuthError):
            await records.identify([authorization(_token(stranger))])
    assert verifier.verified == 3


async def test_a_dead_letter_keeps_that_a_token_was_sent_but_not_the_token() -> None:
    settings = KitSettings(topic_prefix="t.")
    letters = DeadLetters(make_broker(settings, tracer_provider=None), settings)
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic="t.requests.inbound",
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=b"{}",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=[("Authorization", b"Bearer eyJ.secret.sig"), ("event-type", b"x.v1")],
    )
    letter = letters.letter_for(record, Reject("refused", "no"), group="g")
    assert letter.original_headers == {"Authorization": "[redacted]", "event-type": "x.v1"}
    assert "eyJ" not in letter.model_dump_json()


def test_a_challenge_never_echoes_a_character_a_header_cannot_hold() -> None:
    from pactmesh_kit.auth.http import forbid

    header = forbid('not tenant "ac\x00me"\r\n\\').headers["WWW-Authenticate"]
    assert all(" " <= c <= "~" for c in header)
    assert header.endswith('error_description="not tenant ?ac?me????"')
