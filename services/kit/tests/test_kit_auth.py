"""Bearer tokens, the development issuer, the access policy and the FastAPI checks."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pactmesh_contracts.envelope import Principal
from pactmesh_kit.auth import AuthError, TokenVerifier, load_access_policy
from pactmesh_kit.auth.devissuer import KEY_FILE, DevIssuer, ensure_key
from pactmesh_kit.auth.http import Authenticator, CurrentPrincipal, require
from pactmesh_kit.auth.tokens import Identity, JwksKeys, StaticKey, pin_algorithms
from pactmesh_kit.cli import main as cli_main
from pactmesh_kit.settings import KitSettings
from pactmesh_workflows.registry import registry

ISS, AUD = "pactmesh-dev", "pactmesh"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "auth", issuer=ISS, audience=AUD)


def verifier_for(issuer: DevIssuer) -> TokenVerifier:
    return TokenVerifier(
        issuer=ISS, audience=AUD, algorithms=["ES256"], keys=StaticKey(issuer.public_key)
    )


def test_a_minted_token_verifies_to_its_principal_and_tenant(issuer: DevIssuer) -> None:
    token = issuer.mint(
        subject="alice", tenant="acme", roles=["reviewer"], scopes=["workflow:refund"]
    )
    identity = verifier_for(issuer).verify(token)
    assert identity.tenant == "acme"
    assert identity.principal == Principal(
        subject="alice", roles=("reviewer",), scopes=("workflow:refund",)
    )
    assert "reviewer" in identity.principal.roles
    assert "workflow:refund" in identity.principal.scopes
    assert identity.token_id


@pytest.mark.parametrize(
    ("issuer_name", "audience", "ttl_s", "message"),
    [
        (ISS, AUD, -120, "expired"),
        ("evil", AUD, 60, "another issuer"),
        (ISS, "other", 60, "another audience"),
    ],
    ids=["expired", "other-issuer", "other-audience"],
)
def test_expired_foreign_and_misaddressed_tokens_are_refused(
    tmp_path: Path, issuer_name: str, audience: str, ttl_s: int, message: str
) -> None:
    # Same key, so only the claim under test differs from a valid token.
    signer = DevIssuer(tmp_path / "auth", issuer=issuer_name, audience=audience)
    token = signer.mint(subject="a", tenant="acme", ttl_s=ttl_s)
    with pytest.raises(AuthError, match=message) as caught:
        verifier_for(DevIssuer(tmp_path / "auth", issuer=ISS, audience=AUD)).verify(token)
    assert caught.value.status_code == 401


def test_a_token_signed_by_another_key_is_refused(issuer: DevIssuer, tmp_path: Path) -> None:
    stranger = DevIssuer(tmp_path / "elsewhere", issuer=ISS, audience=AUD)
    with pytest.raises(AuthError, match="invalid token"):
        verifier_for(issuer).verify(stranger.mint(subject="a", tenant="acme"))


def test_algorithm_confusion_and_none_are_refused(issuer: DevIssuer) -> None:
    public_pem = issuer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {
        "iss": ISS,
        "aud": AUD,
        "sub": "a",
        "tenant": "acme",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
    }
    # HS256 keyed with the public key: the classic confusion attack. PyJWT itself refuses
    # to use a PEM as an HMAC secret, so build the token by hand.
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    body = jwt.utils.base64url_encode(json.dumps(claims).encode())
    signature = hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
    forged = (header + b"." + body + b"." + jwt.utils.base64url_encode(signature)).decode()
    unsigned = jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]
    for token in (forged, unsigned):
        with pytest.raises(AuthError, match="not accepted"):
            verifier_for(issuer).verify(token)
    with pytest.raises(ValueError, match="not allowed"):
        pin_algorithms(["HS256"])
    with pytest.raises(ValueError, match="not allowed"):
        pin_algorithms(["none"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tenant": None}, "no 'tenant' claim"),
        ({"tenant": "Not A Tenant!"}, "malformed tenant"),
        ({"roles": "admin"}, "must be lists"),
        ({"roles": ["UPPER CASE"]}, "malformed roles"),
    ],
)
def test_tokens_with_malformed_pactmesh_claims_are_refused(
    issuer: DevIssuer, extra: dict[str, object], message: str
) -> None:
    token = issuer.mint(subject="a", tenant="acme", extra=extra)
    with pytest.raises(AuthError, match=message):
        verifier_for(issuer).verify(token)


def test_garbage_is_refused() -> None:
    verifier = TokenVerifier(issuer=ISS, audience=AUD, algorithms=["ES256"], keys=StaticKey(None))
    with pytest.raises(AuthError, match="malformed"):
        verifier.verify("not-a-jwt")


def test_the_key_is_generated_once_even_when_many_processes_race(tmp_path: Path) -> None:
    key_dir = tmp_path / "auth"
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: ensure_key(key_dir), range(16)))
    numbers = {k.private_numbers().private_value for k in keys}
    assert len(numbers) == 1
    assert [p.name for p in key_dir.iterdir()] == [KEY_FILE]
    assert (key_dir / KEY_FILE).stat().st_mode & 0o077 == 0


# --- JWKS ----------------------------------------------------------------------------


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, dict[str, object]]]:
    """A real HTTP server on 127.0.0.1 serving a JWKS document the test controls."""
    document: dict[str, object] = {"keys": []}
    hits = {"count": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits["count"] += 1
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    document["hits"] = hits
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", document
    finally:
        server.shutdown()
        server.server_close()


def test_rs256_tokens_verify_against_a_jwks_url(
    jwks_server: tuple[str, dict[str, object]],
) -> None:
    url, document = jwks_server
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    document["keys"] = [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]
    verifier = TokenVerifier(
        issuer="https://idp.example", audience=AUD, algorithms=["RS256"], keys=JwksKeys(url)
    )
    now = int(time.time())
    claims = {
        "iss": "https://idp.example",
        "aud": AUD,
        "sub": "svc-1",
        "tenant": "acme",
        "roles": ["upstream-system"],
        "scp": ["workflow:refund"],
        "iat": now,
        "exp": now + 60,
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    assert verifier.fetches_keys
    identity = verifier.verify(token)
    assert identity.principal.scopes == ("workflow:refund",)
    verifier.verify(token)
    assert document["hits"] == {"count": 1}, "keys are cached between verifications"
    other = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "unknown"})
    with pytest.raises(AuthError, match="no matching signing key"):
        verifier.verify(other)


# --- the access policy ---------------------------------------------------------------


def test_the_packaged_policy_grants_the_union_of_roles_and_scopes() -> None:
    policy = load_access_policy()
    requester = Principal(subject="r", roles=("requester",))
    refunder = Principal(subject="r", roles=("requester",), scopes=("workflow:refund",))
    assert policy.startable_workflows(requester) == {"support-triage"}
    assert policy.startable_workflows(refunder) == {"support-triage", "refund"}
    assert policy.can(requester, "requests:submit")
    assert not policy.can(requester, "reviews:read")
    assert policy.tool_refusal(refunder, "refund", "payments.refund") is None
    refusal = policy.tool_refusal(requester, "refund", "payments.refund")
    assert refusal is not None
    assert "not granted tool 'payments.refund'" in refusal
    refusal = policy.tool_refusal(refunder, "support-triage", "payments.refund")
    assert refusal is not None
    assert "may not use tool" in refusal
    assert policy.tool_refusal(refunder, None, "payments.refund") is not None
    assert policy.tool_refusal(refunder, "nope", "payments.refund") is not None
    lead = Principal(subject="l", roles=("support-lead",))
    assert policy.may_review(lead, "approve", gate_role="support-lead")
    assert not policy.may_review(lead, "approve", gate_role="procurement-manager")
    assert not policy.may_review(requester, "approve", gate_role="requester")


def test_every_workflow_tool_is_granted_by_some_scope_and_gate_roles_exist() -> None:
    policy = load_access_policy()
    assert set(policy.workflow_tools) == set(registry())
    for name, tools in policy.workflow_tools.items():
        grant = policy.scopes[f"workflow:{name}"]
        assert tools <= grant.tools
        assert name in grant.workflows


def test_the_tools_of_a_workflow_come_from_its_definition_not_the_file(tmp_path: Path) -> None:
    assert load_access_policy().workflow_tools["refund"] == registry()["refund"].tool_names
    path = tmp_path / "access.toml"
    path.write_text(
        '[workflows.refund]\ntools = ["payments.refund", "erp.create_purchase_order"]\n'
    )
    with pytest.raises(ValueError, match="declared by the workflow itself"):
        load_access_policy(path)


def test_a_policy_file_with_unknown_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    path.write_text('[roles.requester]\nworkflowz = ["refund"]\n')
    with pytest.raises(ValueError, match="workflowz"):
        load_access_policy(path)


# --- FastAPI -------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> tuple[TestClient, DevIssuer]:
    settings = KitSettings(data_dir=tmp_path)
    app = FastAPI()
    app.state.authenticator = Authenticator.from_settings(settings)

    @app.get("/whoami")
    async def whoami(identity: CurrentPrincipal) -> dict[str, str]:
        return {"subject": identity.subject, "tenant": identity.tenant}

    @app.get("/reviews")
    async def reviews(
        identity: Annotated[Identity, Depends(require("reviews:read"))],
    ) -> dict[str, str]:
        return {"subject": identity.subject}

    issuer = DevIssuer(settings.auth_key_dir, issuer=ISS, audience=AUD)
    return TestClient(app), issuer


def test_http_401_without_or_with_a_bad_token_and_403_without_the_capability(
    api: tuple[TestClient, DevIssuer],
) -> None:
    client, issuer = api
    missing = client.get("/whoami")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    expired = client.get(
        "/whoami",
        headers={"Authorization": f"Bearer {issuer.mint(subject='a', tenant='t', ttl_s=-99)}"},
    )
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    token = issuer.mint(subject="alice", tenant="acme", roles=["requester"])
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/whoami", headers=auth).json() == {"subject": "alice", "tenant": "acme"}
    denied = client.get("/reviews", headers=auth)
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    reviewer = issuer.mint(subject="bob", tenant="acme", roles=["reviewer"])
    ok = client.get("/reviews", headers={"Authorization": f"Bearer {reviewer}"})
    assert ok.status_code == 200


def test_the_cli_mints_a_token_services_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PACTMESH_DATA_DIR", str(tmp_path))
    assert cli_main(["token", "--role", "reviewer", "--tenant", "acme", "--scope", "x:y"]) == 0
    token = capsys.readouterr().out.strip()
    settings = KitSettings()
    identity = Authenticator.from_settings(settings).verifier.verify(token)
    assert identity.tenant == "acme"
    assert identity.subject == "dev-reviewer"
    assert identity.principal.scopes == ("x:y",)
    monkeypatch.setenv("PACTMESH_AUTH_JWKS_URL", "http://127.0.0.1:9/jwks")
    assert cli_main(["token", "--role", "reviewer"]) == 2
