"""Denied requests in the audit log: every 401, identity 400 and 403, rate-limited.

A flood of refused requests writes a bounded number of rows (and a summary of
what was left out), the auditor finds them with ``?result=denied``, and no row
holds a token, a signature or a secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import failed, ok
from llmops.api import denials, tokens
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import settings
from llmops.engine.spec import validate
from llmops.engine.store import Store, audit, catalog

BASE = "/llm-ops/v1"
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
SECRET = "proxy-hmac-secret-0123456789abcdef"
JWT_SECRET = "jwt-hs256-secret-0123456789abcdef"
WRONG_SECRET = "not-the-server-secret-0123456789ab"
PROXY = ("10.0.0.7", 41000)
STRANGER = ("203.0.113.9", 41000)


def signed(user: str, roles: str) -> dict[str, str]:
    return {"X-User-Id": user, "X-User-Roles": roles,
            "X-Proxy-Signature": proxy_signature(user, roles, SECRET)}


def token(secret: str = JWT_SECRET, **claims: Any) -> str:
    return tokens.encode({"sub": "mallory", "roles": ["admin"], "exp": time.time() + 300,
                          **claims}, secret)


@pytest.fixture
def app(store: Store) -> Any:
    catalog.record(store, "a" * 40, validate.load_and_validate(TEMPLATE))
    api = {"trusted_proxies": ["10.0.0.0/24"], "proxy_secret": SECRET,
           "jwt_secret": JWT_SECRET}
    return create_app(store, settings=settings.load(api=api))


@pytest.fixture
def client(app: Any) -> Callable[..., TestClient]:
    def make(peer: tuple[str, int] = STRANGER) -> TestClient:
        return TestClient(app, client=peer)

    return make


def denied(store: Store) -> list[audit.AuditRecord]:
    return list(reversed(audit.AuditLog(store).query(result="denied", limit=1000).entries))


def no_secret_in(rows: list[audit.AuditRecord], *secrets: str) -> None:
    for row in rows:
        text = repr(row.as_dict())
        for secret in secrets:
            assert secret not in text, (secret, row)


@pytest.mark.slow  # 1000 requests: about 15 s on a busy 2-core machine
def test_a_flood_of_bad_tokens_writes_a_bounded_number_of_rows(
        store: Store, app: Any, client: Callable[..., TestClient]) -> None:
    forged = token(WRONG_SECRET)
    app.state.denials = denials.DenialAudit(clock=lambda: 0.0)  # no refill while flooding
    with TestClient(app, client=STRANGER) as flooder:  # leaving it runs the app's shutdown
        for _ in range(1000):
            failed(flooder.get(f"{BASE}/catalog/models",
                               headers={"Authorization": f"Bearer {forged}"}), 401)
        rows = denied(store)
        assert len(rows) == denials.BURST
        first = rows[0]
        assert (first.actor, first.action, first.target) == (
            "unverified:mallory", "access", f"GET {BASE}/catalog/models")
        assert first.reason == "not authenticated: token signature is invalid"
        assert first.details == {"authenticatedBy": "none", "status": 401,
                                 "client": STRANGER[0]}
    rows = denied(store)
    assert len(rows) == denials.BURST + 1
    assert rows[-1].reason == f"{1000 - denials.BURST} more denied requests suppressed"
    assert rows[-1].details["suppressed"] == 1000 - denials.BURST
    no_secret_in(rows, forged, forged.split(".")[2], WRONG_SECRET, JWT_SECRET)
    assert audit.verify(store).ok
    # The auditor's query of the seed: ?result=denied.
    page = ok(client(PROXY).get(f"{BASE}/governance/audit/logs", params={"result": "denied"},
                                headers=signed("ann", "auditor")))
    assert [e["id"] for e in page["entries"]] == [r.id for r in reversed(rows)]
    assert {e["result"] for e in page["entries"]} == {"denied"}


def test_each_kind_of_refusal_is_audited_with_the_claimed_actor(
        store: Store, client: Callable[..., TestClient]) -> None:
    url = f"{BASE}/catalog/models"
    failed(client().get(url), 401)
    failed(client().get(url, headers=signed("alice", "admin")), 401)  # untrusted peer
    forged = {**signed("bob", "viewer"), "X-User-Roles": "admin"}
    failed(client(PROXY).get(url, headers=forged), 401)
    failed(client(PROXY).get(url, headers={**signed("carol", "viewer"),
                                           "X_User_Id": "root"}), 400)
    failed(client().get(url, headers={"Authorization": "Bearer not-a-jwt"}), 401)
    expired = token(exp=time.time() - 3600)
    failed(client().get(url, headers={"Authorization": f"Bearer {expired}"}), 401)
    failed(client(PROXY).get(f"{BASE}/reconcile/status", headers=signed("vic", "no-role")),
           403)
    rows = denied(store)
    assert [(r.actor, r.details["status"]) for r in rows] == [
        ("anonymous", 401), ("unverified:alice", 401), ("unverified:bob", 401),
        ("unverified:carol", 400), ("anonymous", 401), ("unverified:mallory", 401),
        ("vic", 403)]
    assert "trusted proxy" in rows[1].reason
    assert "signature" in rows[2].reason
    assert rows[5].reason == "not authenticated: token has expired (exp)"
    signatures = [h["X-Proxy-Signature"] for h in (forged, signed("alice", "admin"))]
    no_secret_in(rows, expired, expired.split(".")[2], SECRET, JWT_SECRET, *signatures)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deny(limiter: denials.DenialAudit, log: audit.AuditLog, client: str,
         route: str = "GET /x") -> bool:
    return limiter.record(log, denials.Denial(actor="anonymous", route=route,
                                              reason="not authenticated", client=client,
                                              status=401))


def test_buckets_refill_per_client_and_route_and_many_clients_share_one_summary(
        store: Store) -> None:
    clock, log = Clock(), audit.AuditLog(store)
    limiter = denials.DenialAudit(clock=clock)
    assert sum(deny(limiter, log, "10.1.1.1") for _ in range(50)) == denials.BURST
    assert deny(limiter, log, "10.1.1.1", "GET /y")  # another route: its own bucket
    clock.now += 1 / denials.RATE  # one row's worth of refill
    assert deny(limiter, log, "10.1.1.1")
    rows = denied(store)
    assert rows[-2].reason == f"{50 - denials.BURST} more denied requests suppressed"
    # Many addresses, one request each: bounded by the global bucket, one summary row.
    clock.now += 3600
    before = len(denied(store))
    written = sum(deny(limiter, log, f"10.2.{i // 250}.{i % 250}") for i in range(5000))
    assert written == denials.GLOBAL_BURST
    assert limiter.flush(log, everything=True) == 1
    rows = denied(store)
    assert len(rows) - before == denials.GLOBAL_BURST + 1
    assert rows[-1].target == "*"
    assert rows[-1].details["suppressed"] == 5000 - denials.GLOBAL_BURST
