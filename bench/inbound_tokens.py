"""What verifying an upstream's bearer token costs intake per inbound message (µs).

Three figures per algorithm: the verifier alone (PyJWT: header, signature, claims), the
``RecordAuthenticator`` intake runs on every record with a token it has not seen (the
same plus the header parsing and remembering it), and the same authenticator on a
token it has already verified (a lookup: what every message after an upstream's first
costs until its token expires). ES256 is the development issuer's algorithm, RS256 the
common identity providers'. Bounded: ``BENCH_TOKEN_ROUNDS`` rounds (default 5) of
``BENCH_TOKEN_MESSAGES`` messages (default 2,000); the median round is reported.

    uv run python bench/inbound_tokens.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from pactmesh_kit.auth.devissuer import DevIssuer
from pactmesh_kit.auth.records import RecordAuthenticator, authorization
from pactmesh_kit.auth.tokens import StaticKey, TokenVerifier

ROUNDS = int(os.environ.get("BENCH_TOKEN_ROUNDS", "5"))
MESSAGES = int(os.environ.get("BENCH_TOKEN_MESSAGES", "2000"))
ISS, AUD = "pactmesh-bench", "pactmesh"


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISS,
        "aud": AUD,
        "sub": "system:crm",
        "tenant": "acme",
        "roles": ["upstream-system"],
        "scope": "workflow:refund",
        "iat": now,
        "exp": now + 3600,
    }


def _es256(tmp: Path) -> tuple[TokenVerifier, list[str]]:
    issuer = DevIssuer(tmp, issuer=ISS, audience=AUD)
    tokens = [issuer.mint(subject="system:crm", tenant="acme") for _ in range(MESSAGES)]
    keys = StaticKey(issuer.public_key)
    return TokenVerifier(issuer=ISS, audience=AUD, algorithms=["ES256"], keys=keys), tokens


def _rs256() -> tuple[TokenVerifier, list[str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tokens = [
        jwt.encode({**_claims(), "jti": str(n)}, key, algorithm="RS256") for n in range(MESSAGES)
    ]
    keys = StaticKey(key.public_key())
    return TokenVerifier(issuer=ISS, audience=AUD, algorithms=["RS256"], keys=keys), tokens


async def _per_message_us(run: Callable[[str], Awaitable[object]], tokens: list[str]) -> float:
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for token in tokens:
            await run(token)
        rounds.append((time.perf_counter() - started) / len(tokens) * 1e6)
    return statistics.median(rounds)


async def _measure(verifier: TokenVerifier, tokens: list[str]) -> dict[str, float]:
    async def verify(token: str) -> object:
        return verifier.verify(token)

    async def fresh(token: str) -> object:  # a new authenticator: nothing remembered
        return await RecordAuthenticator(verifier).identify([authorization(token)])

    remembering = RecordAuthenticator(verifier)
    await remembering.identify([authorization(tokens[0])])

    async def remembered(token: str) -> object:
        return await remembering.identify([authorization(tokens[0])])

    return {
        "verify": await _per_message_us(verify, tokens),
        "first_message": await _per_message_us(fresh, tokens),
        "later_messages": await _per_message_us(remembered, tokens),
    }


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "ES256": await _measure(*_es256(Path(tmp))),
            "RS256": await _measure(*_rs256()),
        }
    print(f"per inbound message, median of {ROUNDS} rounds of {MESSAGES} (µs):")
    print(f"{'algorithm':<10}{'verify':>10}{'first message':>16}{'later messages':>17}")
    for algorithm, figures in results.items():
        print(
            f"{algorithm:<10}{figures['verify']:>10.1f}{figures['first_message']:>16.1f}"
            f"{figures['later_messages']:>17.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
