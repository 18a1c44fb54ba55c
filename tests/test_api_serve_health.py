"""``GET /serve/{name}/health``: the endpoint's recorded health plus its model server's answer.

The catalog is the template's; the store holds the endpoint's inventory and
health as a reconcile would record them. In the fast tier the model server
is not asked (no URL template); in the slow tier a real HTTP server on
loopback plays the model server's health path, ready and then not, and a
closed port shows an unreachable one without waiting past the timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from test_api_catalog import REV, SECRET, T0, TEMPLATE

from conftest import failed, ok
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import settings
from llmops.engine.spec import validate
from llmops.engine.store import Store, catalog, state
from llmops.engine.types import ResourceKey, SpecKey

URL = "/llm-ops/v1/serve/support-chat/health"
SERVICE = ResourceKey("", "Service", "nlp-platform-prod", "support-chat")
DEPLOYMENT = ResourceKey("apps", "Deployment", "nlp-platform-prod", "support-chat")


def client_for(store: Store, template: str = "") -> TestClient:
    api = {"trusted_proxies": ["127.0.0.1"], "proxy_secret": SECRET,
           "model_server_url_template": template, "model_server_timeout_seconds": 0.5}
    headers = {"X-User-Id": "vera", "X-User-Roles": "viewer",
               "X-Proxy-Signature": proxy_signature("vera", "viewer", SECRET)}
    return TestClient(create_app(store, settings=settings.load(api=api)),
                      client=("127.0.0.1", 40000), headers=headers)


@pytest.fixture
def recorded(store: Store) -> Store:
    assert catalog.record(store, REV, validate.load_and_validate(TEMPLATE), now=T0)
    state.replace_inventory(store, "prod", [
        state.InventoryItem(DEPLOYMENT, "apps/v1", "h1", "ServingEndpoint", "support-chat", REV),
        state.InventoryItem(SERVICE, "v1", "h2", "ServingEndpoint", "support-chat", REV)])
    state.put_object_status(store, state.ObjectStatus("prod", DEPLOYMENT, "Healthy"))
    state.put_object_status(store, state.ObjectStatus("prod", SERVICE, "Healthy"))
    state.put_spec_status(store, state.SpecStatus(
        SpecKey("ServingEndpoint", "prod", "support-chat"), REV, "Healthy"))
    return store


def test_health_comes_from_the_store_when_the_server_is_not_asked(recorded: Store) -> None:
    client = client_for(recorded)
    data = ok(client.get(URL, params={"environment": "prod"}))
    assert (data["healthy"], data["health"], data["objects"]) == (True, "Healthy",
                                                                  {"Healthy": 2})
    assert data["modelServer"] == {"checked": False, "url": None, "ready": None,
                                   "httpStatus": None, "error": None}
    dev = ok(client.get(URL, params={"environment": "dev"}))
    assert (dev["healthy"], dev["health"]) == (False, "Unknown")
    assert "candidates" in failed(client.get(URL), 409)["data"]
    failed(client.get("/llm-ops/v1/serve/nope/health"), 404)


class _Server(BaseHTTPRequestHandler):
    ready = True
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        self.send_response(200 if type(self).ready else 503)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def model_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow  # a real HTTP server on loopback
def test_the_model_servers_readiness_is_asked_through_the_service(
        recorded: Store, model_server: int) -> None:
    template = f"http://127.0.0.1:{model_server}/{{namespace}}/{{service}}{{path}}"
    client = client_for(recorded, template)
    _Server.ready = True
    data = ok(client.get(URL, params={"environment": "prod"}))
    assert data["modelServer"]["ready"] is True
    assert _Server.seen[-1] == "/nlp-platform-prod/support-chat/health"
    _Server.ready = False
    data = ok(client.get(URL, params={"environment": "prod"}))
    assert (data["healthy"], data["modelServer"]["httpStatus"]) == (False, 503)


@pytest.mark.slow  # a connection attempt on loopback
def test_an_unreachable_model_server_is_reported_without_waiting(recorded: Store) -> None:
    client = client_for(recorded, "http://127.0.0.1:9/{path}")
    started = time.monotonic()
    data = ok(client.get(URL, params={"environment": "prod"}))
    # A hang bound (the probe's own timeout is 1 s), not a speed test: a busy machine took 4.6 s.
    assert time.monotonic() - started < 15
    assert data["modelServer"]["checked"] is True
    assert data["modelServer"]["ready"] is None
    assert "not reachable" in data["modelServer"]["error"]
    assert data["healthy"] is True  # the store says Healthy; no answer is not a "no"
