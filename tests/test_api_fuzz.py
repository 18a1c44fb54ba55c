"""Property tests of the API's front door: whatever a client sends as identity headers,
bearer tokens or list query parameters, the answer is a 4xx or a success, never a 500,
and nothing authenticates without a valid proxy signature or a verifying token.

Requests go through ``TestClient`` (ASGI, no sockets), so header values reach the app
as the raw bytes generated (control characters, CR/LF, latin-1), which no HTTP parser
in front would let through. Example counts keep the file under 20 s on a busy 2-core
machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmops.api import tokens
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import settings as llmops_settings
from llmops.engine.spec import validate
from llmops.engine.store import Store, catalog

BASE = "/llm-ops/v1"
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
PROXY_SECRET = "fuzz-proxy-secret"
JWT_SECRET = "fuzz-jwt-secret-0123456789abcdef-0123"
ISSUER = "https://sso.example.com"
AUDIENCE = "llmops-api"
PROXY = ("10.0.0.7", 41000)
STRANGER = ("203.0.113.9", 41000)
PROTECTED = f"{BASE}/reconcile/status"
LISTS = ("/catalog/models", "/catalog/prompts", "/catalog/datasets", "/governance/policies",
         "/governance/audit/logs", "/prompts/experiments", "/reconcile/status",
         "/reconcile/runs", "/reconcile/events", "/serving/endpoints", "/training/jobs",
         "/costs")
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

header_bytes = st.binary(max_size=80)
header_text = st.text(st.characters(max_codepoint=0x7F), max_size=80)
"""ASCII: ``TestClient`` passes header bytes through its ``str`` headers, re-encoding
anything above 0x7F as UTF-8, which would break a signature made over the bytes."""


@pytest.fixture
def app(store: Store) -> Any:
    catalog.record(store, "a" * 40, validate.load_and_validate(TEMPLATE))
    api = {"trusted_proxies": ["10.0.0.0/24"], "proxy_secret": PROXY_SECRET,
           "jwt_secret": JWT_SECRET, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    return create_app(store, trigger=lambda: None, settings=llmops_settings.load(api=api))


def client(app: Any, peer: tuple[str, int] = PROXY) -> TestClient:
    return TestClient(app, client=peer, raise_server_exceptions=False)


def assert_refused(response: httpx.Response, *codes: int) -> None:
    """A refusal in the envelope with one of ``codes``: never a 500, never a success."""
    assert response.status_code in codes, (response.status_code, response.text[:300])
    body = response.json()
    assert body["status"] == "fail"
    assert body["message"]
    assert "Traceback" not in response.text


# --------------------------------------------------------------------------- proxy headers


@FUZZ
@given(user=header_bytes, roles=header_bytes, teams=st.none() | header_bytes,
       signature=st.one_of(header_bytes, st.text("0123456789abcdef", min_size=64,
                                                  max_size=64).map(str.encode)),
       trusted=st.booleans())
def test_identity_headers_without_a_valid_signature_never_authenticate(
        app: Any, user: bytes, roles: bytes, teams: bytes | None, signature: bytes,
        trusted: bool) -> None:
    expected = proxy_signature(user.decode("latin-1"), roles.decode("latin-1"), PROXY_SECRET,
                               None if teams is None else teams.decode("latin-1"))
    if trusted and signature.strip().lower() == expected.encode():  # pragma: no cover
        return  # a forged HMAC-SHA256: not going to happen
    headers = [(b"x-user-id", user), (b"x-user-roles", roles), (b"x-proxy-signature", signature)]
    if teams is not None:
        headers.append((b"x-user-teams", teams))
    response = client(app, PROXY if trusted else STRANGER).get(PROTECTED, headers=headers)
    assert_refused(response, 400, 401)


@FUZZ
@given(user=header_text, roles=header_text, teams=st.none() | header_text)
def test_validly_signed_arbitrary_identities_never_500(app: Any, user: str, roles: str,
                                                       teams: str | None) -> None:
    headers = [(b"x-user-id", user.encode("latin-1")),
               (b"x-user-roles", roles.encode("latin-1")),
               (b"x-proxy-signature",
                proxy_signature(user, roles, PROXY_SECRET, teams).encode())]
    if teams is not None:
        headers.append((b"x-user-teams", teams.encode("latin-1")))
    response = client(app).get(PROTECTED, headers=headers)
    assert response.status_code in (200, 400, 401, 403), response.text[:300]
    assert "Traceback" not in response.text
    if response.status_code == 401:  # trusted peer and a valid signature: never 401
        pytest.fail(f"a validly signed identity was refused: {response.text[:300]}")


# --------------------------------------------------------------------------- bearer tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
claims = st.dictionaries(
    st.sampled_from(["sub", "roles", "teams", "exp", "nbf", "iat", "iss", "aud", "kid"])
    | st.text(max_size=8), json_values, max_size=8)
headers_json = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "none", "RS256", "ES256", "HS512", ""]) | st.text()},
    optional={"typ": st.text(max_size=5), "kid": json_values, "crit": json_values})


@st.composite
def forged_tokens(draw: st.DrawFn) -> str:
    """Tokens no one holding the key made: noise, random segments, alg none, wrong keys."""
    how = draw(st.sampled_from(["noise", "segments", "unsigned", "wrong-key"]))
    if how == "noise":
        return draw(st.text(st.characters(codec="latin-1"), max_size=200))
    if how == "segments":
        return ".".join(draw(st.lists(st.binary(max_size=60).map(_b64), min_size=1,
                                      max_size=5)))
    header = _b64(json.dumps(draw(headers_json)).encode())
    payload = _b64(json.dumps(draw(claims | st.just(_valid_claims()))).encode())
    if how == "unsigned":
        return f"{header}.{payload}.{draw(st.sampled_from(['', _b64(b'x' * 32)]))}"
    key = draw(st.text(min_size=1, max_size=40).filter(lambda k: k != JWT_SECRET))
    return hs256({"alg": "HS256", "typ": "JWT"}, draw(claims | st.just(_valid_claims())), key)


def hs256(header: dict[str, Any], payload: dict[str, Any], key: str) -> str:
    """A JWT signed with HMAC-SHA256 over any JSON claims (PyJWT's encoder checks them)."""
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    mac = hmac.new(key.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(mac)}"


def _valid_claims() -> dict[str, Any]:
    return {"sub": "mallory", "roles": ["admin"], "exp": int(time.time()) + 600,
            "iss": ISSUER, "aud": AUDIENCE}


@FUZZ
@given(token=forged_tokens(), scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "Basic",
                                                        "", "Bearer  "]))
def test_forged_bearer_tokens_never_authenticate(app: Any, token: str, scheme: str) -> None:
    value = f"{scheme} {token}".encode("latin-1", "replace")
    response = client(app).get(PROTECTED, headers=[(b"authorization", value)])
    assert_refused(response, 400, 401)


@FUZZ
@given(payload=claims)
def test_correctly_signed_tokens_with_arbitrary_claims_never_500(
        app: Any, payload: dict[str, Any]) -> None:
    response = client(app).get(PROTECTED, headers={
        "Authorization": f"Bearer {hs256({'alg': 'HS256'}, payload, JWT_SECRET)}"})
    assert response.status_code in (200, 401, 403), response.text[:300]
    assert "Traceback" not in response.text


# --------------------------------------------------------------------------- list queries


@pytest.fixture
def admin(app: Any) -> TestClient:
    token = tokens.encode(_valid_claims(), JWT_SECRET)
    return TestClient(app, client=STRANGER, raise_server_exceptions=False,
                      headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def query_names(admin: TestClient) -> list[str]:
    """Every query parameter the list routes publish in the OpenAPI."""
    spec = admin.get(f"{BASE}/openapi.json").json()
    return sorted({p["name"] for path in LISTS for p in
                   spec["paths"][f"{BASE}{path}"]["get"].get("parameters", [])
                   if p["in"] == "query"})


query_values = st.one_of(
    st.text(max_size=30), st.integers().map(str), st.floats().map(str),
    st.sampled_from(["", "-1", "0", "9" * 30, "2026-11-25T09:00:00Z", "0-0",
                     "1-18446744073709551616", "nan", "inf", "true", "%00", "dev", "prod",
                     "succeeded"]))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_list_query_parameters_never_500(admin: TestClient, query_names: list[str],
                                         data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(LISTS))
    query = data.draw(st.lists(st.tuples(st.sampled_from(query_names) | st.text(max_size=10),
                                         query_values), max_size=6))
    response = admin.get(f"{BASE}{path}", params=query)
    if response.status_code == 503 and path == "/reconcile/events":  # no Redis here
        assert "without Redis" in response.json()["message"]
        return
    assert response.status_code in (200, 400, 404, 409, 422), (path, query,
                                                                response.text[:300])
    assert "Traceback" not in response.text
    assert response.json()["status"] == ("success" if response.status_code == 200 else "fail")
