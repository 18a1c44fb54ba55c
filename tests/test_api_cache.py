"""The API with the Redis status cache: ``lastRun`` from the cache, store fallback, run events.

On a real store (``store``) and the real Redis on 127.0.0.1:6379
(``LLMOPS_TEST_REDIS_URL``), never skipped. Every test writes under its own
random key prefix (the app's ``status_cache`` is replaced by one on that
prefix) and deletes its keys afterwards. Values are written the way the
daemon writes them (``put_environment`` / ``publish_run`` with the
``_publisher`` fields), so the signatures are the real ones.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from test_api import BASE, PEER, PROXY_SECRET, SHA, TEMPLATE, failed, identity, ok, seed_run

from conftest import REDIS_URL
from llmops.api.app import create_app
from llmops.engine import settings
from llmops.engine.spec import validate
from llmops.engine.store import Store, cache, catalog, state
from llmops.engine.store.models import RunResult

DOWN_URL = "redis://127.0.0.1:1/0"
HANG = 10.0
"""Seconds that mean hung: far above the 0.5 s timeouts, so a busy machine does not fail it."""
SECRET = b"api-cache-test-secret"




def make_client(store: Store, status_cache: cache.StatusCache | None, *,
                redis_url: str = "") -> TestClient:
    """A signed-in admin client (as in ``test_api``) whose app uses ``status_cache``."""
    catalog.record(store, "f" * 40, validate.load_and_validate(TEMPLATE))
    cfg = settings.load(api={"trusted_proxies": ["127.0.0.1/32"],
                             "proxy_secret": PROXY_SECRET}, redis_url=redis_url)
    app = create_app(store, settings=cfg)
    built = app.state.status_cache
    if redis_url:
        assert isinstance(built, cache.StatusCache)  # create_app builds one from the URL
        built.close()
    else:
        assert built is None
    app.state.status_cache = status_cache
    return TestClient(app, client=PEER, headers=identity())


def daemon_value(env: str, run_id: int | None, *, result: str = "succeeded",
                 revision: str = "c" * 40, reason: str = "Applied",
                 counts: dict[str, int] | None = None) -> dict[str, Any]:
    """What ``llmops.cli.daemon_cmd._publisher`` writes for one pass result."""
    return {"environment": env, "revision": revision, "result": result, "reason": reason,
            "message": f"{env}: reconciled", "runId": run_id,
            "counts": counts or {"created": 1, "configured": 0, "deleted": 0,
                                 "unchanged": 7, "failed": 0}}


@pytest.fixture
def seeded(store: Store) -> state.Run:
    """Environment ``prod`` with one finished run in the store (the fallback)."""
    state.put_environment_status(store, state.EnvironmentStatus(
        environment="prod", observed_revision=SHA, last_applied_revision=SHA,
        last_attempted_revision=SHA))
    return seed_run(store, "prod", RunResult.FAILED, error="boom",
                    counts=state.RunCounts(failed=1, unchanged=3))


def prod_status(client: TestClient) -> dict[str, Any]:
    data = ok(client.get(f"{BASE}/reconcile/status"))
    by_env = {e["environment"]: e for e in data["environments"]}
    result: dict[str, Any] = by_env["prod"]
    return result


def assert_from_store(entry: dict[str, Any], run: state.Run) -> None:
    assert entry["lastRunSource"] == "store"
    assert entry["lastRun"]["id"] == run.id
    assert entry["lastRun"]["result"] == "failed"
    assert entry["lastRun"]["revision"] == SHA
    assert entry["lastRun"]["finishedAt"] is not None
    assert entry["lastRun"]["reason"] == ""
    assert entry["lastRun"]["counts"] == {"created": 0, "configured": 0, "deleted": 0,
                                          "unchanged": 3, "failed": 1}


# --------------------------------------------------------------------------- status


def test_last_run_comes_from_the_signed_cache_value(store: Store, seeded: state.Run,
                                                    prefix: str) -> None:
    with cache.StatusCache(REDIS_URL, prefix=prefix, secret=SECRET) as status_cache:
        client = make_client(store, status_cache, redis_url=REDIS_URL)
        assert_from_store(prod_status(client), seeded)  # nothing cached yet

        assert status_cache.put_environment("prod", daemon_value("prod", seeded.id + 1))
        entry = prod_status(client)
        assert entry["lastRunSource"] == "cache"
        assert entry["lastRun"] == {
            "id": seeded.id + 1, "result": "succeeded", "revision": "c" * 40,
            "finishedAt": None, "reason": "Applied",
            "counts": {"created": 1, "configured": 0, "deleted": 0, "unchanged": 7,
                       "failed": 0}}
        assert entry["lastAppliedRevision"] == SHA  # the rest is still the store's


def test_a_pass_without_a_run_or_of_another_shape_falls_back_to_the_store(
        store: Store, seeded: state.Run, prefix: str) -> None:
    with cache.StatusCache(REDIS_URL, prefix=prefix, secret=SECRET) as status_cache:
        client = make_client(store, status_cache)
        for value in (daemon_value("prod", None),                      # no run recorded
                      daemon_value("prod", 5, result="running"),
                      daemon_value("prod", 5, result="exploded"),
                      {**daemon_value("prod", 5), "counts": {"created": "1"}},
                      {**daemon_value("prod", 5), "runId": True},
                      daemon_value("stg", 5)):                         # another environment
            assert status_cache.put_environment("prod", value)
            assert_from_store(prod_status(client), seeded)


def test_a_tampered_cache_value_falls_back_to_the_store(store: Store, seeded: state.Run,
                                                        prefix: str, raw: redis.Redis) -> None:
    with cache.StatusCache(REDIS_URL, prefix=prefix, secret=SECRET) as status_cache:
        client = make_client(store, status_cache)
        key = status_cache.environment_key("prod")
        assert status_cache.put_environment("prod", daemon_value("prod", 999))
        assert prod_status(client)["lastRunSource"] == "cache"

        genuine = raw.get(key)
        assert isinstance(genuine, bytes)
        forged = genuine.replace(b'"runId":999', b'"runId":998')
        assert forged != genuine
        for value in (forged, b"other bytes", b'{"environment":"prod","runId":998}'):
            raw.set(key, value)
            entry = prod_status(client)
            assert_from_store(entry, seeded)
            assert 998 not in (entry["lastRun"]["id"],)

        # Signed with another secret (someone who can write Redis but lacks the key).
        with cache.StatusCache(REDIS_URL, prefix=prefix, secret=b"not ours") as foreign:
            assert foreign.put_environment("prod", daemon_value("prod", 998))
        assert_from_store(prod_status(client), seeded)


def test_redis_down_falls_back_to_the_store_quickly(store: Store, seeded: state.Run) -> None:
    with cache.StatusCache(DOWN_URL, timeout=0.5) as status_cache:
        client = make_client(store, status_cache)
        started = time.monotonic()
        entry = prod_status(client)
        assert time.monotonic() - started < HANG
        assert_from_store(entry, seeded)


def test_create_app_builds_a_cache_from_the_url_and_none_without(store: Store,
                                                                 seeded: state.Run) -> None:
    cfg = settings.load(redis_url=DOWN_URL)
    app = create_app(store, settings=cfg)
    built = app.state.status_cache
    assert isinstance(built, cache.StatusCache)
    built.close()
    assert create_app(store, settings=settings.load(redis_url="")).state.status_cache is None

    # The app's own (unreachable) cache still never fails the status route.
    catalog.record(store, "f" * 40, validate.load_and_validate(TEMPLATE))
    app = create_app(store, settings=settings.load(
        redis_url=DOWN_URL, api={"trusted_proxies": ["127.0.0.1/32"],
                                 "proxy_secret": PROXY_SECRET}))
    started = time.monotonic()
    entry = prod_status(TestClient(app, client=PEER, headers=identity()))
    assert time.monotonic() - started < HANG
    assert_from_store(entry, seeded)
    app.state.status_cache.close()


# --------------------------------------------------------------------------- events


def test_events_list_and_page_with_the_next_cursor(store: Store, prefix: str,
                                                   raw: redis.Redis) -> None:
    with cache.StatusCache(REDIS_URL, prefix=prefix, secret=SECRET) as status_cache:
        client = make_client(store, status_cache)
        empty = ok(client.get(f"{BASE}/reconcile/events"))
        assert empty == {"items": [], "next": "0-0"}

        for run_id in range(1, 6):
            assert status_cache.publish_run(daemon_value("prod", run_id))
        raw.xadd(status_cache.runs_key, {"event": b"forged"})   # fails verification
        assert status_cache.publish_run(daemon_value("dev", 6, result="failed",
                                                     reason="ApplyFailed"))

        seen: list[dict[str, Any]] = []
        cursor = "0-0"
        pages = 0
        while True:
            page = ok(client.get(f"{BASE}/reconcile/events",
                                 params={"after": cursor, "limit": 2}))
            pages += 1
            seen += page["items"]
            if not page["items"] and page["next"] == cursor:
                break
            cursor = page["next"]
        assert [e["runId"] for e in seen] == [1, 2, 3, 4, 5, 6]  # the forged one left out
        assert pages == 5  # 2 + 2 + (5, forged) + 6 + the empty poll
        assert seen[0] == {"id": seen[0]["id"], "environment": "prod", "revision": "c" * 40,
                           "result": "succeeded", "reason": "Applied",
                           "message": "prod: reconciled", "runId": 1,
                           "counts": {"created": 1, "configured": 0, "deleted": 0,
                                      "unchanged": 7, "failed": 0}}
        assert seen[-1]["environment"] == "dev"
        assert seen[-1]["result"] == "failed"
        ids = [e["id"] for e in seen]
        assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))

        # Polling from the last cursor sees only what comes after it.
        assert status_cache.publish_run(daemon_value("prod", 7))
        newer = ok(client.get(f"{BASE}/reconcile/events", params={"after": cursor}))
        assert [e["runId"] for e in newer["items"]] == [7]
        assert newer["next"] == newer["items"][0]["id"]


def test_events_reject_a_malformed_cursor(store: Store, prefix: str) -> None:
    with cache.StatusCache(REDIS_URL, prefix=prefix, secret=SECRET) as status_cache:
        client = make_client(store, status_cache)
        for bad in ("x", "1-", "-1", "1-2-3", "$"):
            failed(client.get(f"{BASE}/reconcile/events", params={"after": bad}), 422)
        failed(client.get(f"{BASE}/reconcile/events", params={"limit": 0}), 422)


def test_events_are_409_without_redis_and_503_when_it_is_down(store: Store) -> None:
    client = make_client(store, None)
    body = failed(client.get(f"{BASE}/reconcile/events"), 409)
    assert "Redis" in body["message"]
    responses = client.get(f"{BASE}/openapi.json").json()["paths"][
        f"{BASE}/reconcile/events"]["get"]["responses"]
    assert {"409", "503"} <= set(responses)

    with cache.StatusCache(DOWN_URL, timeout=0.5) as status_cache:
        client = make_client(store, status_cache)
        started = time.monotonic()
        failed(client.get(f"{BASE}/reconcile/events"), 503)
        assert time.monotonic() - started < HANG


def test_events_need_reconcile_read(store: Store, prefix: str) -> None:
    with cache.StatusCache(REDIS_URL, prefix=prefix, secret=SECRET) as status_cache:
        client = make_client(store, status_cache)
        url = f"{BASE}/reconcile/events"
        ok(client.get(url, headers=identity("vic", "viewer")))
        failed(client.get(url, headers=identity("nobody", "no-such-role")), 403)
        failed(client.get(url, headers={**identity(), "X-Proxy-Signature": "forged"}), 401)
