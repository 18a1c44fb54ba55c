"""Git push webhooks, via HTTP on a real store (SQLite and PostgreSQL).

A GitHub delivery is signed with HMAC-SHA256 over the raw body, a GitLab one
carries the shared token; only an authentic push to the watched branch wakes
the reconciler, and nothing is reconciled inline (the trigger is a recorder
here). Each refusal is checked as a client sees it (status code, envelope)
and in the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.api.routes.webhooks import github_signature
from llmops.engine import settings
from llmops.engine.store import Store, audit

BASE = "/llm-ops/v1"
URL = f"{BASE}/webhooks/git"
SECRET = "webhook-secret-0123456789"
AFTER = "c0ffee" + "0" * 34
PUSH = {"ref": "refs/heads/main", "before": "a" * 40, "after": AFTER,
        "repository": {"full_name": "acme/llm-specs"}}


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def github(body: bytes, event: str = "push", secret: str = SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": github_signature(body, secret), "X-GitHub-Event": event,
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "Content-Type": "application/json"}


def gitlab(token: str = SECRET, event: str = "Push Hook") -> dict[str, str]:
    return {"X-Gitlab-Token": token, "X-Gitlab-Event": event,
            "Content-Type": "application/json"}


def envelope(response: httpx.Response, code: int) -> dict[str, Any]:
    assert response.status_code == code, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"status", "message", "data"}
    assert body["status"] == ("success" if code < 400 else "fail")
    return body


def webhook_rows(store: Store) -> list[audit.AuditRecord]:
    return list(audit.AuditLog(store).query(action="webhook").entries)


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def make_client(store: Store, calls: list[str]) -> Callable[..., TestClient]:
    """A client with no user identity: webhooks authenticate by their secret alone."""

    def make(secret: str | None = SECRET, *, max_body_bytes: int = 1024 * 1024,
             trigger: bool = True) -> TestClient:
        api: dict[str, Any] = {"max_body_bytes": max_body_bytes}
        if secret is not None:
            api["webhook_secret"] = secret
        app = create_app(store, trigger=(lambda: calls.append("wake")) if trigger else None,
                         settings=settings.load(api=api, git={"branch": "main"}))
        return TestClient(app)

    return make


# --------------------------------------------------------------------------- accepted


def test_a_signed_github_push_to_the_watched_branch_triggers_and_is_audited(
        store: Store, make_client: Callable[..., TestClient], calls: list[str]) -> None:
    raw = body_of(PUSH)
    body = envelope(make_client().post(URL, content=raw, headers=github(raw)), 202)
    assert body["data"] == {"triggered": True, "event": "push", "ref": "refs/heads/main",
                            "after": AFTER}
    assert calls == ["wake"]
    [row] = webhook_rows(store)
    assert (row.actor, row.target, row.result) == ("webhook:github", "refs/heads/main",
                                                   "succeeded")
    assert row.details["after"] == AFTER
    assert row.details["delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"


def test_a_gitlab_push_with_the_token_triggers(
        store: Store, make_client: Callable[..., TestClient], calls: list[str]) -> None:
    body = envelope(make_client().post(URL, content=body_of(PUSH), headers=gitlab()), 202)
    assert body["data"]["triggered"] is True
    assert calls == ["wake"]
    [row] = webhook_rows(store)
    assert (row.actor, row.target, row.result) == ("webhook:gitlab", "refs/heads/main",
                                                   "succeeded")


def test_ping_other_branches_deletions_and_other_events_answer_200_without_triggering(
        store: Store, make_client: Callable[..., TestClient], calls: list[str]) -> None:
    client = make_client()
    ping = body_of({"zen": "Keep it logically awesome.", "hook_id": 1})
    assert envelope(client.post(URL, content=ping, headers=github(ping, "ping")),
                    200)["data"]["triggered"] is False
    for payload in ({**PUSH, "ref": "refs/heads/feature"}, {**PUSH, "ref": "refs/tags/v1"},
                    {**PUSH, "after": "0" * 40, "deleted": True}):
        raw = body_of(payload)
        data = envelope(client.post(URL, content=raw, headers=github(raw)), 200)["data"]
        assert data["triggered"] is False
        assert data["ref"] == payload["ref"]
    raw = body_of({"action": "opened"})
    assert envelope(client.post(URL, content=raw, headers=github(raw, "pull_request")),
                    200)["data"] == {"triggered": False, "event": "pull_request", "ref": None,
                                     "after": None}
    assert calls == []
    rows = webhook_rows(store)
    assert len(rows) == 5
    assert {r.result for r in rows} == {"succeeded"}


# --------------------------------------------------------------------------- refused


def test_a_bad_or_missing_signature_is_401_audited_and_nothing_is_triggered(
        store: Store, make_client: Callable[..., TestClient], calls: list[str]) -> None:
    client = make_client()
    raw = body_of(PUSH)
    tampered = body_of({**PUSH, "ref": "refs/heads/main", "after": "f" * 40})
    refusals = [
        client.post(URL, content=raw, headers=github(raw, secret="guessed")),
        client.post(URL, content=tampered, headers=github(raw)),  # signature of another body
        client.post(URL, content=raw, headers={"X-GitHub-Event": "push"}),
        client.post(URL, content=raw, headers=gitlab(token="guessed")),
        client.post(URL, content=raw),
    ]
    for response in refusals:
        body = envelope(response, 401)
        assert SECRET not in response.text
        assert body["data"] is None
    assert calls == []
    rows = webhook_rows(store)
    assert [r.result for r in rows] == ["denied"] * 5
    assert {r.actor for r in rows} == {"webhook:github", "webhook:gitlab", "webhook:unknown"}
    assert all(SECRET not in json.dumps(r.as_dict()) for r in rows)


def test_no_secret_configured_is_409(
        store: Store, make_client: Callable[..., TestClient], calls: list[str]) -> None:
    raw = body_of(PUSH)
    for secret in (None, ""):
        body = envelope(make_client(secret).post(URL, content=raw, headers=github(raw, secret="")),
                        409)
        assert "secret" in body["message"]
    assert calls == []
    assert webhook_rows(store) == []


def test_malformed_json_after_a_valid_signature_is_400(
        store: Store, make_client: Callable[..., TestClient], calls: list[str]) -> None:
    client = make_client()
    for raw in (b"{not json", b"\xff\xfe", b"[1, 2]", body_of({"after": AFTER}),
                body_of({**PUSH, "ref": 7}), body_of({**PUSH, "after": "not a sha"})):
        envelope(client.post(URL, content=raw, headers=github(raw)), 400)
    assert calls == []
    assert webhook_rows(store) == []


def test_an_oversized_body_is_413_before_the_signature_is_checked(
        store: Store, make_client: Callable[..., TestClient], calls: list[str]) -> None:
    client = make_client(max_body_bytes=1024)
    raw = body_of({**PUSH, "padding": "x" * 2048})
    body = envelope(client.post(URL, content=raw, headers=github(raw)), 413)
    assert body["data"] == {"maxBodyBytes": 1024}

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it is read
        yield raw[:600]
        yield raw[600:]

    envelope(client.post(URL, content=chunks(), headers=github(raw)), 413)
    assert calls == []
    assert webhook_rows(store) == []


def test_a_push_without_an_attached_reconciler_is_409_and_not_audited_as_accepted(
        store: Store, make_client: Callable[..., TestClient]) -> None:
    raw = body_of(PUSH)
    envelope(make_client(trigger=False).post(URL, content=raw, headers=github(raw)), 409)
    assert webhook_rows(store) == []


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_the_webhook_is_documented_and_needs_no_user_identity(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    operation = client.get(f"{BASE}/openapi.json").json()["paths"][URL]["post"]
    assert {"202", "200", "400", "401", "409"} <= set(operation["responses"])
    assert "403" not in operation["responses"]
