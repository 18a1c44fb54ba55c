"""The seed's ``ServingClient`` signing as the trusted proxy, with the secret from the shell.

README has the user export ``LLMOPS_API__PROXY_SECRET`` for ``llmops up``; a script run
in that same shell must sign with it rather than refuse for want of the seed's own
``LLMOPS_PROXY_SECRET``. The requests go to an ``httpx.MockTransport``, no server.
"""

from __future__ import annotations

import httpx
import pytest

from llmops.client import ServingClient, proxy_headers

SENT: list[httpx.Headers] = []


def _answer(request: httpx.Request) -> httpx.Response:
    SENT.append(request.headers)
    return httpx.Response(200, json={"status": "success", "message": "", "data": {"items": []}})


def _signature_sent(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    for name in ("LLMOPS_PROXY_SECRET", "LLMOPS_API__PROXY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    SENT.clear()
    with ServingClient("http://llmops.test", user_id="alice", user_roles="ml-engineer",
                       user_teams="nlp-platform",
                       transport=httpx.MockTransport(_answer)) as client:
        client.list_endpoints()
    return SENT[-1]["X-Proxy-Signature"]


def _expected(secret: str) -> str:
    return proxy_headers("alice", "ml-engineer", secret, "nlp-platform")["X-Proxy-Signature"]


def test_the_servers_secret_variable_signs_when_the_seeds_is_unset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _signature_sent(monkeypatch, {"LLMOPS_API__PROXY_SECRET": "change-me"})
    assert sent == _expected("change-me")


def test_the_seeds_own_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _signature_sent(monkeypatch, {"LLMOPS_PROXY_SECRET": "seed-secret",
                                         "LLMOPS_API__PROXY_SECRET": "change-me"})
    assert sent == _expected("seed-secret")


def test_no_secret_at_all_names_every_way_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="LLMOPS_PROXY_SECRET or LLMOPS_API__PROXY_SECRET"):
        _signature_sent(monkeypatch, {})
