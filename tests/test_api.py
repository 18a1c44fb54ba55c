"""The REST API over HTTP on a real store (SQLite and PostgreSQL): envelope, routes, failures.

Every request goes through ``TestClient`` (or a real uvicorn process for
``llmops serve``), and every answer is checked as a client sees it: status
code, envelope shape, data. State is seeded with the store's own writers.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import SERVER_START_SECONDS, failed, ok
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import settings
from llmops.engine.spec import validate
from llmops.engine.store import Store, audit, catalog, state
from llmops.engine.store.models import RunResult, SourceState

BASE = "/llm-ops/v1"
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
SHA = "a" * 40
UNREACHABLE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/x"
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
PROXY_SECRET = "proxy-secret-for-tests"
PEER = ("127.0.0.1", 50000)  # the trusted proxy, as TestClient's peer address


def identity(user: str = "alice", roles: str = "admin") -> dict[str, str]:
    """Identity headers as the trusted proxy signs them."""
    return {"X-User-Id": user, "X-User-Roles": roles,
            "X-Proxy-Signature": proxy_signature(user, roles, PROXY_SECRET)}


def client_for(store: Store, *, trigger: Callable[[], None] | None = None,
               max_body_bytes: int | None = None, raise_errors: bool = True,
               seed: bool = True, roles: str = "admin") -> TestClient:
    """A client behind the trusted proxy, signed in as ``alice`` with ``roles``.

    ``seed`` records the template's specs (and so its RBAC Policy) in the catalog.
    """
    api: dict[str, Any] = {"trusted_proxies": ["127.0.0.1/32"], "proxy_secret": PROXY_SECRET}
    if max_body_bytes is not None:
        api["max_body_bytes"] = max_body_bytes
    if seed:
        catalog.record(store, "f" * 40, validate.load_and_validate(TEMPLATE))
    app = create_app(store, trigger=trigger, settings=settings.load(api=api))
    return TestClient(app, raise_server_exceptions=raise_errors, client=PEER,
                      headers=identity(roles=roles))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """One migrated SQLite store, for behaviour that does not depend on the backend."""
    with Store(f"sqlite:///{tmp_path / 'api.db'}") as opened:
        opened.migrate()
        yield opened


def seed_run(store: Store, env: str, result: RunResult, *, minutes: int = 0,
             plan: dict[str, Any] | None = None, error: str = "",
             counts: state.RunCounts | None = None) -> state.Run:
    run = state.start_run(store, env, SHA, plan={"actuator": "hydrate"},
                          started_at=T0 + timedelta(minutes=minutes))
    if result is RunResult.RUNNING:
        return run
    return state.finish_run(store, run.id, result, counts=counts, error=error, plan=plan,
                            finished_at=T0 + timedelta(minutes=minutes, seconds=30))


# --------------------------------------------------------------------------- probes


def test_probes_answer_in_the_envelope(store: Store) -> None:
    client = client_for(store)
    assert ok(client.get(f"{BASE}/healthz")) == {"alive": True}
    assert ok(client.get(f"{BASE}/readyz")) == {"ready": True, "store": "reachable"}


def test_unreachable_store_is_503_never_a_crash() -> None:
    with Store(UNREACHABLE_URL, connect_timeout=1) as store:
        client = client_for(store, seed=False)
        assert ok(client.get(f"{BASE}/healthz")) == {"alive": True}
        body = failed(client.get(f"{BASE}/readyz"), 503)
        assert "unavailable" in body["message"]
        assert "127.0.0.1" not in str(body)  # the store's address stays in the log
        failed(client.get(f"{BASE}/reconcile/runs"), 503)
        failed(client.get(f"{BASE}/governance/audit/logs"), 503)


# --------------------------------------------------------------------------- status


def test_status_reports_revisions_conditions_and_last_finished_run(store: Store) -> None:
    ready = state.Condition(state.ConditionType.READY, state.ConditionStatus.TRUE, "Applied",
                            "applied 3 objects", T0)
    state.put_environment_status(store, state.EnvironmentStatus(
        environment="prod", observed_revision="b" * 40, last_applied_revision=SHA,
        last_attempted_revision="b" * 40, conditions=(ready,), last_success_at=T0,
        source_state=SourceState.AVAILABLE, source_message="fetched",
        observed_author="Ada <ada@example.com>", observed_subject="prod: chat 1.3.0"))
    state.put_environment_status(store, state.EnvironmentStatus(environment="dev"))
    finished = seed_run(store, "prod", RunResult.SUCCEEDED,
                        counts=state.RunCounts(created=2, configured=1, unchanged=4))
    seed_run(store, "prod", RunResult.RUNNING, minutes=5)  # in progress: not "last finished"

    client = client_for(store)
    data = ok(client.get(f"{BASE}/reconcile/status"))
    by_env = {e["environment"]: e for e in data["environments"]}
    assert sorted(by_env) == ["dev", "prod"]
    prod = by_env["prod"]
    assert prod["observedRevision"] == "b" * 40
    assert prod["observedCommit"] == {"author": "Ada <ada@example.com>",
                                      "subject": "prod: chat 1.3.0"}
    assert prod["lastAppliedRevision"] == SHA
    assert prod["lastAttemptedRevision"] == "b" * 40
    assert prod["conditions"] == [{"type": "Ready", "status": "True", "reason": "Applied",
                                   "message": "applied 3 objects",
                                   "lastTransitionTime": "2025-03-01T12:00:00Z"}]
    assert prod["source"] == {"state": "available", "message": "fetched"}
    assert prod["lastSuccessAt"] == "2025-03-01T12:00:00Z"
    assert prod["lastRun"]["id"] == finished.id
    assert prod["lastRun"]["result"] == "succeeded"
    assert prod["lastRun"]["counts"] == {"created": 2, "configured": 1, "deleted": 0,
                                         "unchanged": 4, "failed": 0}
    assert by_env["dev"]["lastRun"] is None
    assert by_env["dev"]["source"]["state"] == "unknown"

    only_dev = ok(client.get(f"{BASE}/reconcile/status", params={"environment": "dev"}))
    assert [e["environment"] for e in only_dev["environments"]] == ["dev"]


# --------------------------------------------------------------------------- runs


def test_runs_page_newest_first_with_a_cursor_and_filters(store: Store) -> None:
    results = [RunResult.SUCCEEDED, RunResult.FAILED, RunResult.SUCCEEDED, RunResult.NOOP,
               RunResult.SUCCEEDED]
    dev = [seed_run(store, "dev", r, minutes=i).id for i, r in enumerate(results)]
    prod = seed_run(store, "prod", RunResult.SUCCEEDED, minutes=10).id
    client = client_for(store)

    seen: list[int] = []
    cursor: int | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"environment": "dev", "limit": 2}
        if cursor is not None:
            params["before_id"] = cursor
        page = ok(client.get(f"{BASE}/reconcile/runs", params=params))
        seen += [run["id"] for run in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == sorted(dev, reverse=True)
    assert pages == 3  # 2 + 2 + 1, and the last page says there is no more

    everything = ok(client.get(f"{BASE}/reconcile/runs"))
    assert everything["items"][0]["id"] == prod
    assert everything["nextCursor"] is None
    first = everything["items"][0]
    assert set(first) == {"id", "environment", "revision", "commit", "result", "startedAt",
                          "finishedAt", "counts", "error"}
    assert first["commit"] == {"author": "", "subject": ""}  # not recorded: unknown

    succeeded = ok(client.get(f"{BASE}/reconcile/runs",
                              params={"environment": "dev", "result": "succeeded"}))
    assert [r["id"] for r in succeeded["items"]] == [dev[4], dev[2], dev[0]]

    bad = failed(client.get(f"{BASE}/reconcile/runs", params={"result": "exploded"}), 422)
    assert "result" in bad["message"]
    assert bad["data"]["errors"][0]["field"] == "result"
    too_many = failed(client.get(f"{BASE}/reconcile/runs", params={"limit": 201}), 422)
    assert "limit" in too_many["message"]


def test_run_detail_has_its_commit_and_plan_detail_redacted_again(store: Store) -> None:
    detail = {"specs": [{"kind": "ServingEndpoint", "environment": "prod", "name": "chat",
                         "action": "configured", "title": "ServingEndpoint/prod/chat",
                         "details": ["replicas 2-4 -> 3-6"]}],
              "objects": [{"id": "Deployment/llmops-prod/chat", "action": "configured",
                           "owner": "ServingEndpoint/chat", "drifted": False,
                           "diff": "-  replicas: 2\n+  replicas: 3\n+  token: ghp_S3cr3tT0ken0123",
                           "truncated": False}],
              "omitted": 0, "maxChars": 200000}
    run = state.start_run(store, "prod", SHA, author="Ada <ada@example.com>",
                          subject="prod: chat to 3 replicas", plan_detail=detail)
    data = ok(client_for(store).get(f"{BASE}/reconcile/runs/{run.id}"))
    assert data["commit"] == {"author": "Ada <ada@example.com>",
                              "subject": "prod: chat to 3 replicas"}
    shown = data["planDetail"]
    assert shown["specs"][0]["details"] == ["replicas 2-4 -> 3-6"]
    assert shown["objects"][0]["id"] == "Deployment/llmops-prod/chat"
    assert "+  replicas: 3" in shown["objects"][0]["diff"]
    assert "S3cr3t" not in str(shown)  # recorded by mistake, still never answered
    assert shown["maxChars"] == 200000


def test_run_detail_has_its_plan_and_object_results(store: Store) -> None:
    plan = {"write": {"Deployment/llmops-prod/chat": "configured"}, "delete": [],
            "actuator": "kubernetes", "credentials": {"token": "ghp_S3cr3tT0ken0123456789"},
            "results": {"Service/llmops-prod/chat": "created",
                        "Deployment/llmops-prod/chat": "failed"}}
    run = seed_run(store, "prod", RunResult.FAILED, plan=plan,
                   error="Deployment/llmops-prod/chat: https://bob:hunter2@git.example/x",
                   counts=state.RunCounts(created=1, failed=1))
    client = client_for(store)

    data = ok(client.get(f"{BASE}/reconcile/runs/{run.id}"))
    assert data["id"] == run.id
    assert data["result"] == "failed"
    assert data["results"] == [{"object": "Deployment/llmops-prod/chat", "outcome": "failed"},
                               {"object": "Service/llmops-prod/chat", "outcome": "created"}]
    assert data["plan"]["write"] == {"Deployment/llmops-prod/chat": "configured"}
    assert "results" not in data["plan"]
    assert data["counts"]["failed"] == 1
    # Nothing secret leaves the API, even when it was recorded.
    assert "hunter2" not in data["error"]
    assert "S3cr3t" not in str(data["plan"])

    assert data["planDetail"] is None  # this run recorded none

    missing = failed(client.get(f"{BASE}/reconcile/runs/{run.id + 100}"), 404)
    assert str(run.id + 100) in missing["message"]
    not_int = failed(client.get(f"{BASE}/reconcile/runs/latest"), 422)
    assert "run_id" in not_int["message"]
    assert not_int["data"]["errors"][0] == {
        "location": "path", "field": "run_id", "type": "int_parsing",
        "message": not_int["data"]["errors"][0]["message"]}


# --------------------------------------------------------------------------- trigger and bodies


def test_trigger_wakes_the_reconciler_and_takes_no_options(sqlite_store: Store) -> None:
    calls: list[str] = []
    client = client_for(sqlite_store, trigger=lambda: calls.append("wake"))

    assert ok(client.post(f"{BASE}/reconcile/trigger"), 202) == {"triggered": True}
    assert ok(client.post(f"{BASE}/reconcile/trigger", json={}), 202) == {"triggered": True}
    assert calls == ["wake", "wake"]

    extra = failed(client.post(f"{BASE}/reconcile/trigger", json={"env": "prod"}), 422)
    assert "env" in extra["message"]
    assert calls == ["wake", "wake"]  # a refused request triggers nothing

    not_allowed = failed(client.get(f"{BASE}/reconcile/trigger"), 405)
    assert not_allowed["message"] == "Method Not Allowed"
    assert "POST" in client.get(f"{BASE}/reconcile/trigger").headers["allow"]


def test_trigger_without_a_reconciler_is_a_documented_409(sqlite_store: Store) -> None:
    """No reconciler attached is how this server is configured, not an outage: a 409 the
    OpenAPI lists (a 503 told clients to retry, and schemathesis flags every 5xx)."""
    client = client_for(sqlite_store)
    body = failed(client.post(f"{BASE}/reconcile/trigger"), 409)
    assert body["data"] == {"triggered": False}
    responses = client.get(f"{BASE}/openapi.json").json()["paths"][
        f"{BASE}/reconcile/trigger"]["post"]["responses"]
    assert "409" in responses


@pytest.mark.parametrize("kind", ["form", "multipart"])
def test_form_bodies_are_refused_on_every_route(sqlite_store: Store, kind: str) -> None:
    calls: list[int] = []
    client = client_for(sqlite_store, trigger=lambda: calls.append(1))
    send: dict[str, Any] = ({"data": {"a": "1"}} if kind == "form"
                            else {"files": {"f": ("x.txt", b"hello")}})
    for path in ("/reconcile/trigger", "/reconcile/runs", "/healthz"):
        method = "POST" if path == "/reconcile/trigger" else "PUT"
        body = failed(client.request(method, f"{BASE}{path}", **send), 415)
        assert "form" in body["message"]
    assert calls == []


def test_oversized_bodies_are_413_declared_or_streamed(sqlite_store: Store) -> None:
    calls: list[int] = []
    client = client_for(sqlite_store, trigger=lambda: calls.append(1), max_body_bytes=64)

    declared = failed(client.post(f"{BASE}/reconcile/trigger", content=b"{" + b" " * 100 + b"}",
                                  headers={"content-type": "application/json"}), 413)
    assert declared["data"] == {"maxBodyBytes": 64}

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it is read
        yield b"{"
        yield b" " * 100
        yield b"}"

    streamed = failed(client.post(f"{BASE}/reconcile/trigger", content=chunks(),
                                  headers={"content-type": "application/json"}), 413)
    assert "64 bytes" in streamed["message"]
    assert streamed["data"] == {"maxBodyBytes": 64}
    assert calls == []
    # Within the limit it goes through.
    ok(client.post(f"{BASE}/reconcile/trigger", content=b"{}",
                   headers={"content-type": "application/json"}), 202)
    assert calls == [1]


# --------------------------------------------------------------------------- audit


def test_audit_logs_filter_and_page(store: Store) -> None:
    ticks = iter(T0 + timedelta(minutes=i) for i in range(100))
    log = audit.AuditLog(store, clock=lambda: next(ticks))
    for i in range(7):
        log.append(audit.AuditEntry(
            actor="alice" if i % 2 == 0 else "bob", action="apply",
            target=f"Deployment/llmops-prod/chat-{i}",
            result="succeeded" if i != 3 else "failed",
            environment="prod" if i < 5 else "dev", source_commit=SHA, reason=f"#{i}"))
    client = client_for(store)
    url = f"{BASE}/governance/audit/logs"

    ids: list[int] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = ok(client.get(url, params=params))
        ids += [e["id"] for e in page["entries"]]
        if page["nextCursor"] is None:
            break
        params = {"limit": 3, "after_id": page["nextCursor"]}
    assert ids == [7, 6, 5, 4, 3, 2, 1]

    entry = ok(client.get(url, params={"limit": 1}))["entries"][0]
    assert set(entry) == {"id", "at", "actor", "sourceCommit", "environment", "action",
                          "target", "result", "reason", "details", "prevHash", "hash",
                          "keyId"}
    assert entry["at"] == "2025-03-01T12:06:00Z"

    def ids_for(**query: Any) -> list[int]:
        return [e["id"] for e in ok(client.get(url, params=query))["entries"]]

    assert ids_for(actor="bob") == [6, 4, 2]
    assert ids_for(result="failed") == [4]
    assert ids_for(environment="dev", action="apply") == [7, 6]
    assert ids_for(since="2025-03-01T12:02:00Z", until="2025-03-01T12:04:00+00:00") == [4, 3]
    assert ids_for(since="2025-03-01T12:05:00") == [7, 6]  # no offset: UTC

    # An empty or backwards range is well formed (no schema relates two parameters): it
    # matches nothing, rather than a 400 for a request the OpenAPI admits.
    assert ids_for(since="2025-03-02T00:00:00Z", until="2025-03-01T00:00:00Z") == []
    assert ids_for(since="2025-03-01T12:04:00Z", until="2025-03-01T12:04:00Z") == []
    bad_time = failed(client.get(url, params={"since": "yesterday"}), 422)
    assert bad_time["data"]["errors"][0]["field"] == "since"
    failed(client.get(url, params={"limit": 1001}), 422)


# --------------------------------------------------------------------------- unexpected errors


def test_unexpected_error_is_500_with_only_an_error_id(
        sqlite_store: Store, caplog: pytest.LogCaptureFixture) -> None:
    client = client_for(sqlite_store, raise_errors=False)
    app = client.app
    assert isinstance(app, FastAPI)

    @app.get(f"{BASE}/test-only/explode")
    def explode() -> None:
        raise RuntimeError("db password=hunter2 at /srv/secret/path")

    with caplog.at_level(logging.ERROR, logger="llmops.api"):
        body = failed(client.get(f"{BASE}/test-only/explode?q=1"), 500)
    assert set(body["data"]) == {"errorId"}
    error_id = body["data"]["errorId"]
    assert uuid.UUID(error_id).version == 4
    assert "hunter2" not in str(body)
    assert "Traceback" not in str(body)
    records = [r for r in caplog.records if error_id in r.getMessage()]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "GET" in message
    assert f"{BASE}/test-only/explode" in message
    assert records[0].exc_info is not None


def test_a_broken_schema_is_a_500_not_a_stack_trace(postgres_url: str) -> None:
    with Store(postgres_url) as store:
        store.migrate()
        with store.connection(write=True) as conn:
            conn.exec_driver_sql("DROP TABLE reconcile_runs")
        client = client_for(store, raise_errors=False)
        body = failed(client.get(f"{BASE}/reconcile/runs"), 500)
        assert set(body["data"]) == {"errorId"}
        assert "reconcile_runs" not in str(body)


# --------------------------------------------------------------------------- OpenAPI, metrics


def test_openapi_documents_every_route_and_the_envelope(sqlite_store: Store) -> None:
    client = client_for(sqlite_store)
    response = client.get(f"{BASE}/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    for path, method in [("/healthz", "get"), ("/readyz", "get"), ("/reconcile/status", "get"),
                         ("/reconcile/runs", "get"), ("/reconcile/runs/{run_id}", "get"),
                         ("/reconcile/trigger", "post"), ("/governance/audit/logs", "get")]:
        assert method in paths[f"{BASE}{path}"], path
    run_ok = paths[f"{BASE}/reconcile/runs/{{run_id}}"]["get"]["responses"]["200"]
    schema_ref = run_ok["content"]["application/json"]["schema"]["$ref"]
    envelope = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert set(envelope["properties"]) == {"status", "message", "data"}
    assert "404" in paths[f"{BASE}/reconcile/runs/{{run_id}}"]["get"]["responses"]
    assert client.get(f"{BASE}/docs").status_code == 200


def test_the_docs_page_can_sign_in_with_a_token(sqlite_store: Store) -> None:
    """Swagger UI shows "Authorize" (a bearer scheme) and marks every operation that needs
    an identity, so "Try it out" works with `llmops up`'s token; the probes need none."""
    spec = client_for(sqlite_store).get(f"{BASE}/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert ".llmops/tokens/<role>" in scheme["description"]
    open_paths = set()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if operation.get("security") != [{"bearer": []}]:
                open_paths.add(f"{method.upper()} {path}")
    assert open_paths == {f"GET {BASE}/healthz", f"GET {BASE}/readyz",
                          f"POST {BASE}/webhooks/git", "GET /metrics"}


def test_docs_work_with_no_internet(sqlite_store: Store) -> None:
    """Swagger UI's page names no other host; its assets come from the app itself."""
    client = TestClient(create_app(sqlite_store, settings=settings.Settings()))  # no identity
    page = client.get(f"{BASE}/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "SwaggerUIBundle(" in html
    assert re.findall(r"(?:https?:)?//[\w.-]+", html) == [], "the page names another host"
    assert "validatorUrl\": null" in html  # no badge fetched from validator.swagger.io
    assert "oauth2RedirectUrl" not in html
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(refs) == [f"{BASE}/docs/assets/{name}" for name in
                            ("favicon-32x32.png", "swagger-ui-bundle.js", "swagger-ui.css")]
    assert f"url: '{BASE}/openapi.json'" in html
    types = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
             "favicon-32x32.png": "image/png"}
    for ref in refs:
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert asset.headers["content-type"].split(";")[0] == types[ref.rsplit("/", 1)[1]]
        assert len(asset.content) > 500, ref
    bundle = client.get(f"{BASE}/docs/assets/swagger-ui-bundle.js").text
    assert ".SwaggerUIBundle=" in bundle  # the global the page calls
    failed(client.get(f"{BASE}/docs/assets/no-such.js"), 404)
    assert client.get(f"{BASE}/docs/oauth2-redirect").status_code == 404
    assert client.get(f"{BASE}/redoc").status_code == 404
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert path not in client.get(f"{BASE}/openapi.json").json()["paths"]


def test_metrics_count_requests_by_route_template(sqlite_store: Store) -> None:
    client = client_for(sqlite_store)
    for run_id in (1, 2, 3):
        client.get(f"{BASE}/reconcile/runs/{run_id}")
    client.get(f"{BASE}/reconcile/runs")
    client.get("/no/such/path")
    client.post(f"{BASE}/reconcile/trigger", data={"a": "b"})

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert ('llmops_api_requests_total{method="GET",'
            f'route="{BASE}/reconcile/runs/{{run_id}}",status="404"}} 3.0') in text
    assert f'route="{BASE}/reconcile/runs",status="200"}} 1.0' in text
    assert 'route="<unmatched>",status="404"} 1.0' in text
    assert f'method="POST",route="{BASE}/reconcile/trigger",status="415"}} 1.0' in text
    assert ('llmops_api_request_duration_seconds_count{method="GET",'
            f'route="{BASE}/reconcile/runs/{{run_id}}",status="404"}} 3.0') in text
    assert "/reconcile/runs/2" not in text
    assert "/no/such/path" not in text


# --------------------------------------------------------------------------- llmops serve


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_runs_the_api_under_uvicorn(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path / "home"),
           "LLMOPS_API__MAX_BODY_BYTES": "64"}
    env.pop("LLMOPS_DATABASE_URL", None)
    env.pop("LLMOPS_REDIS_URL", None)
    env.pop("LLMOPS_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from llmops.cli.serve_cmd import serve; serve()",
         "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}{BASE}"
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "llmops serve did not start"
                time.sleep(0.1)
        assert ok(ready) == {"ready": True, "store": "reachable"}
        # No identity (and no trusted proxy configured): refused before anything runs.
        assert "not authenticated" in failed(httpx.post(f"{base}/reconcile/trigger"),
                                             401)["message"]

        def chunks() -> Iterator[bytes]:
            yield b"{"
            yield b" " * 200
            yield b"}"

        streamed = httpx.post(f"{base}/reconcile/trigger", content=chunks(),
                              headers={"content-type": "application/json"})
        failed(streamed, 413)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
