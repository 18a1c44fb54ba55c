"""Authentication and RBAC of the REST API, via HTTP on a real store (SQLite and PostgreSQL).

Identity comes from a trusted, signing proxy or from an HS256 bearer token;
permissions from the RBAC Policy recorded in the catalog. Every refusal is
checked as a client sees it (status code, envelope) and every 403 in the
audit log.
"""

from __future__ import annotations

import base64
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import failed, ok
from llmops.api import auth, tokens
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import settings
from llmops.engine.spec import validate
from llmops.engine.store import Store, audit, catalog

BASE = "/llm-ops/v1"
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
SECRET = "proxy-hmac-secret"
JWT_SECRET = "jwt-hs256-secret-0123456789"
ISSUER = "https://sso.example.com"
AUDIENCE = "llmops-api"
PROXY = ("10.0.0.7", 41000)
STRANGER = ("203.0.113.9", 41000)


def signed(user: str, roles: str, secret: str = SECRET) -> dict[str, str]:
    return {"X-User-Id": user, "X-User-Roles": roles,
            "X-Proxy-Signature": proxy_signature(user, roles, secret)}


def token(**claims: Any) -> str:
    base: dict[str, Any] = {"sub": "jo", "roles": ["viewer"], "exp": time.time() + 300,
                            "iss": ISSUER, "aud": AUDIENCE}
    base.update(claims)
    return tokens.encode({k: v for k, v in base.items() if v is not None}, JWT_SECRET)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def make_client(store: Store, calls: list[str]) -> Callable[..., TestClient]:
    catalog.record(store, "a" * 40, validate.load_and_validate(TEMPLATE))
    api = {"trusted_proxies": ["10.0.0.0/24", "::1"], "proxy_secret": SECRET,
           "jwt_secret": JWT_SECRET, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    app = create_app(store, trigger=lambda: calls.append("wake"),
                     settings=settings.load(api=api))

    def make(peer: tuple[str, int] = PROXY) -> TestClient:
        return TestClient(app, client=peer)

    return make


# --------------------------------------------------------------------------- who is calling


def test_no_identity_is_401_and_probes_docs_and_metrics_stay_open(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for path in ("/reconcile/status", "/catalog/models", "/serving/endpoints", "/costs",
                 "/governance/audit/logs", "/governance/policies", "/prompts/experiments"):
        response = client.get(f"{BASE}{path}")
        body = failed(response, 401)
        assert "not authenticated" in body["message"]
        assert response.headers["www-authenticate"].startswith("Bearer")
    failed(client.post(f"{BASE}/reconcile/trigger"), 401)
    for path in (f"{BASE}/healthz", f"{BASE}/readyz", f"{BASE}/openapi.json", f"{BASE}/docs",
                 "/metrics"):
        assert client.get(path).status_code == 200, path


def test_identity_headers_count_only_from_a_trusted_peer_with_a_valid_signature(
        make_client: Callable[..., TestClient]) -> None:
    url = f"{BASE}/catalog/models"
    assert ok(make_client().get(url, headers=signed("alice", "viewer")))["items"]
    assert ok(make_client(("::1", 5)).get(url, headers=signed("alice", "viewer")))["items"]

    # Correctly signed, but sent straight from an untrusted peer: not believed.
    body = failed(make_client(STRANGER).get(url, headers=signed("alice", "admin")), 401)
    assert "trusted proxy" in body["message"]
    failed(make_client(("testclient", 50000)).get(url, headers=signed("alice", "admin")), 401)
    # ... and a valid token does not rescue forged headers.
    failed(make_client(STRANGER).get(url, headers={**signed("alice", "admin"),
                                                   **bearer(token())}), 401)

    client = make_client()
    forged = {**signed("alice", "viewer"), "X-User-Roles": "admin"}  # roles swapped after signing
    assert "signature" in failed(client.get(url, headers=forged), 401)["message"]
    failed(client.get(url, headers=signed("alice", "admin", secret="guessed")), 401)
    failed(client.get(url, headers={"X-User-Id": "alice", "X-User-Roles": "admin"}), 401)
    failed(client.get(url, headers={**signed("alice", "admin"), "X-Proxy-Signature": "zz"}), 401)


def test_duplicate_underscore_and_oversized_identity_headers_are_400(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    url = f"{BASE}/catalog/models"
    good = signed("alice", "viewer")

    twice = [*good.items(), ("X-User-Id", "mallory")]
    body = failed(client.get(url, headers=twice), 400)
    assert "x-user-id" in body["message"]
    assert body["data"] == {"header": "x-user-id"}
    failed(client.get(url, headers=[*good.items(), ("x-user-roles", "admin")]), 400)
    failed(client.get(url, headers=[*bearer(token()).items(),
                                    ("Authorization", f"Bearer {token(sub='eve')}")]), 400)

    for variant in ("X_User_Id", "x_user_roles", "X_Proxy_Signature"):
        body = failed(client.get(url, headers={**good, variant: "admin"}), 400)
        assert variant.lower() in body["message"]
        failed(make_client(STRANGER).get(url, headers={variant: "admin"}), 400)

    many = ",".join(f"r{i}" for i in range(40))
    failed(client.get(url, headers=signed("alice", many)), 400)
    failed(client.get(url, headers=signed("alice", "x" * 2000)), 400)


def test_bearer_tokens_are_verified(make_client: Callable[..., TestClient]) -> None:
    client = make_client(STRANGER)  # tokens need no trusted peer
    url = f"{BASE}/catalog/models"
    assert ok(client.get(url, headers=bearer(token())))["items"]
    assert ok(client.get(url, headers=bearer(token(aud=["other", AUDIENCE]))))["items"]

    refusals = {
        "expired": token(exp=time.time() - tokens.LEEWAY_SECONDS - 5),
        "expiry": token(exp=None),
        "audience": token(aud="someone-else"),
        "issuer": token(iss="https://evil.example.com"),
        "subject": token(sub=""),
        "signature": token()[:-4] + "AAAA",
        "not valid yet": token(nbf=time.time() + 600),
    }
    for reason, value in refusals.items():
        body = failed(client.get(url, headers=bearer(value)), 401)
        assert reason in body["message"], (reason, body["message"])

    header, payload, _ = token().split(".")
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    assert "algorithm" in failed(client.get(url, headers=bearer(f"{unsigned}.{payload}.")),
                                 401)["message"]
    failed(client.get(url, headers=bearer("not-a-jwt")), 401)
    failed(client.get(url, headers={"Authorization": f"Basic {header}"}), 401)
    other_key = tokens.encode({"sub": "jo", "roles": ["admin"], "exp": time.time() + 60,
                               "iss": ISSUER, "aud": AUDIENCE}, "another-secret")
    failed(client.get(url, headers=bearer(other_key)), 401)


# --------------------------------------------------------------------------- what they may do


def test_a_missing_permission_is_403_and_audited(
        store: Store, make_client: Callable[..., TestClient], calls: list[str]) -> None:
    client = make_client()
    body = failed(client.post(f"{BASE}/reconcile/trigger", headers=signed("vic", "viewer")), 403)
    assert body["data"] == {"permission": "reconcile:trigger", "roles": ["viewer"]}
    assert calls == []
    failed(client.get(f"{BASE}/governance/audit/logs",
                      headers=bearer(token(sub="jo", roles=["viewer"]))), 403)
    failed(client.get(f"{BASE}/catalog/models", headers=signed("nobody", "no-such-role")), 403)
    failed(client.get(f"{BASE}/catalog/models", headers=signed("nobody", "")), 403)

    denied = audit.AuditLog(store).query(result="denied").entries
    assert [(e.actor, e.action, e.target, e.reason) for e in reversed(denied)] == [
        ("vic", "access", f"POST {BASE}/reconcile/trigger", "reconcile:trigger"),
        ("jo", "access", f"GET {BASE}/governance/audit/logs", "audit:read"),
        ("nobody", "access", f"GET {BASE}/catalog/models", "catalog:read"),
        ("nobody", "access", f"GET {BASE}/catalog/models", "catalog:read")]
    assert denied[-1].details == {"authenticatedBy": "proxy", "roles": ["viewer"],
                                  "status": 403, "client": "10.0.0.7"}
    assert audit.verify(store).ok

    # The auditor reads the log (and sees the denials); admin ("*") triggers.
    logs = ok(client.get(f"{BASE}/governance/audit/logs", params={"result": "denied"},
                         headers=signed("ann", "auditor")))
    assert len(logs["entries"]) == 4
    ok(client.post(f"{BASE}/reconcile/trigger", headers=signed("root", "admin")), 202)
    ok(client.post(f"{BASE}/reconcile/trigger", headers=signed("max", "viewer,ml-engineer")),
       202)
    assert calls == ["wake", "wake"]


def test_a_policy_change_is_enforced_as_soon_as_its_revision_is_recorded(
        store: Store, make_client: Callable[..., TestClient], calls: list[str],
        template_copy: Path) -> None:
    client = make_client()
    viewer = signed("vic", "viewer")
    failed(client.post(f"{BASE}/reconcile/trigger", headers=viewer), 403)
    assert ok(client.get(f"{BASE}/costs", headers=viewer))["window"] == "24h"

    rbac = template_copy / "policies" / "rbac.yaml"
    text = rbac.read_text()
    viewer_block = text.split("      viewer:\n", 1)[1].split("      # Compliance", 1)[0]
    rbac.write_text(text.replace(viewer_block, "        - reconcile:trigger\n"))
    catalog.record(store, "b" * 40, validate.load_and_validate(template_copy))

    ok(client.post(f"{BASE}/reconcile/trigger", headers=viewer), 202)
    assert calls == ["wake"]
    body = failed(client.get(f"{BASE}/costs", headers=viewer), 403)  # revoked as well
    assert body["data"]["permission"] == "costs:read"


def test_a_malformed_trusted_proxy_setting_fails_at_start(store: Store) -> None:
    with pytest.raises(ValueError, match="not-an-ip"):
        create_app(store, settings=settings.load(api={"trusted_proxies": ["not-an-ip"]}))


def test_the_cached_role_table_follows_every_revision_any_process_records(
        store: Store, make_client: Callable[..., TestClient], calls: list[str],
        template_copy: Path) -> None:
    """The role table is cached per catalog revision; a revision recorded through another
    connection to the database (the daemon's process) is enforced at the next request,
    and going back to an earlier revision brings its roles back."""
    client = make_client()
    viewer = signed("vic", "viewer")
    failed(client.post(f"{BASE}/reconcile/trigger", headers=viewer), 403)
    failed(client.post(f"{BASE}/reconcile/trigger", headers=viewer), 403)  # from the cache

    rbac = template_copy / "policies" / "rbac.yaml"
    text = rbac.read_text()
    granted = "      viewer:\n        - reconcile:trigger\n"
    rbac.write_text(text.replace("      viewer:\n", granted))
    with Store(store.url) as daemon:  # another engine: nothing in this one is told
        catalog.record(daemon, "b" * 40, validate.load_and_validate(template_copy))
        ok(client.post(f"{BASE}/reconcile/trigger", headers=viewer), 202)
        rbac.write_text(text)
        catalog.record(daemon, "a" * 40, validate.load_and_validate(template_copy))
    failed(client.post(f"{BASE}/reconcile/trigger", headers=viewer), 403)
    assert calls == ["wake"]


@pytest.mark.parametrize("path", ["/serving/endpoints",
                                  "/serving/endpoints/support-chat?environment=dev",
                                  "/governance/audit/logs"])
def test_the_pre_serialised_reads_still_refuse_without_identity_or_permission(
        make_client: Callable[..., TestClient], path: str) -> None:
    client = make_client()
    failed(client.get(f"{BASE}{path}"), 401)
    failed(client.get(f"{BASE}{path}", headers=signed("nobody", "no-such-role")), 403)
    ok(client.get(f"{BASE}{path}", headers=signed("root", "admin")))


def test_authentication_runs_on_the_event_loop_and_still_audits_a_refusal(
        store: Store, make_client: Callable[..., TestClient]) -> None:
    """Checking the identity is CPU only, so FastAPI runs it inline: a hop to its thread
    pool costs about 0.2 ms of CPU, a tenth of a read's (docs/benchmarks.md). Only a
    refusal's audit write, which blocks on the store, goes to the pool; it still lands."""
    assert inspect.iscoroutinefunction(auth.get_principal)
    client = make_client()
    failed(client.get(f"{BASE}/serving/endpoints",
                      headers={"Authorization": "Bearer not-a-token"}), 401)
    [row] = audit.AuditLog(store).query(action="access").entries
    assert (row.result, row.target) == ("denied", "GET /llm-ops/v1/serving/endpoints")
