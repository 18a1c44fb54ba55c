"""Git push webhooks: ``POST /webhooks/git`` wakes the reconciler when the specs repo moves.

Role: accept push notifications from GitHub and GitLab and call the app's
trigger (the daemon's ``trigger`` or the Redis wake-up publisher); nothing is
reconciled here, the reconciler fetches the branch itself. The route is
authenticated by a shared secret (``settings.api.webhook_secret``), not by a
user identity, so it declares no permission:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``
  and ``X-GitHub-Event: push | ping``;
- GitLab: ``X-Gitlab-Token: <the secret>`` and ``X-Gitlab-Event: Push Hook``.

Order of checks: no secret configured -> 409 (webhooks are off on this
server); the raw bytes are read (the request guard has already refused a declared length over
``api.max_body_bytes`` with 413 before anything is buffered, and stops a
chunked body at the same limit); the signature or token is compared in
constant time -> 401 (audited as ``denied``) when it is missing or wrong;
only then is the body parsed -> 400 when it is not a JSON object or a push
lacks a string ``ref``. A ``ping`` answers 200 without triggering; a push to
the watched branch (``refs/heads/<settings.git.branch>``) calls the trigger
and answers 202 ``{"triggered": true, "ref", "after"}``; a push to another
ref, a branch deletion or another event answers 200 with ``triggered``
false. Every accepted delivery is audited (action ``webhook``, actor
``webhook:github`` / ``webhook:gitlab``, target the ref, result
``succeeded``). Input: the request, settings, audit log. Output: the
envelope. Caller: ``llmops.api.app`` mounts ``router``.

The event header is not covered by GitHub's signature, and a captured
delivery can be replayed; both can only wake the reconciler, which is
idempotent for a revision it has already applied.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from enum import StrEnum
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from llmops.api import auth, deps, errors
from llmops.api.deps import AuditLogDep, SettingsDep
from llmops.api.envelope import ApiModel, Envelope, Failure, success
from llmops.engine.store import audit

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

PATH = "/webhooks/git"
ACTION = "webhook"
GITHUB_SIGNATURE = "x-hub-signature-256"
GITHUB_EVENT = "x-github-event"
GITHUB_DELIVERY = "x-github-delivery"
GITLAB_TOKEN = "x-gitlab-token"
GITLAB_EVENT = "x-gitlab-event"
GITLAB_PUSH = "Push Hook"
SIGNATURE_PREFIX = "sha256="
MAX_REF_CHARS = 255
MAX_EVENT_CHARS = 64
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
_ZERO_SHA = re.compile(r"^0+$")


class Provider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    UNKNOWN = "unknown"

    @property
    def actor(self) -> str:
        return f"webhook:{self.value}"


class WebhookResult(ApiModel):
    """What a delivery did: whether the reconciler was woken, for which ref and commit."""

    triggered: bool
    event: str = Field(description="The provider's event name, as sent.")
    ref: str | None = None
    after: str | None = None


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Envelope[WebhookResult],
          "description": "A ping, or an event that does not concern the watched branch."},
    400: {"model": Failure, "description": "The signed body is not a usable JSON payload."},
    401: {"model": Failure, "description": "The signature or token is missing or wrong."},
    409: {"model": Failure,
          "description": "No webhook secret is configured (webhooks are off), or a push to the "
                         "watched branch reached a server with no reconciler attached."},
    503: {"model": Failure, "description": "The store is unavailable."},
}


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"type": "string"}}


# The route reads the raw body and its headers itself (the signature covers the exact
# bytes), so what a provider sends is documented here rather than declared as parameters.
OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [
        _header("X-Hub-Signature-256", "GitHub: sha256=<hex HMAC-SHA256 of the body>."),
        _header("X-GitHub-Event", "GitHub: push or ping (other events are ignored)."),
        _header("X-GitHub-Delivery", "GitHub: the delivery id (recorded in the audit log)."),
        _header("X-Gitlab-Token", "GitLab: the shared secret."),
        _header("X-Gitlab-Event", "GitLab: Push Hook (other events are ignored)."),
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "description": "The provider's push or ping payload.",
        "properties": {"ref": {"type": "string", "maxLength": MAX_REF_CHARS},
                       "after": {"type": "string"}}}}}},
}


# --------------------------------------------------------------------------- verification


def github_signature(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _one(request: Request, name: str) -> str | None:
    """The header's only value; a header sent twice counts as missing (ambiguous)."""
    values = request.headers.getlist(name)
    return values[0] if len(values) == 1 else None


def _provider(request: Request) -> Provider:
    names = {name.lower() for name in request.headers}
    if GITLAB_TOKEN in names or GITLAB_EVENT in names:
        return Provider.GITLAB
    if GITHUB_SIGNATURE in names or GITHUB_EVENT in names:
        return Provider.GITHUB
    return Provider.UNKNOWN


def _verify(provider: Provider, request: Request, body: bytes, secret: str) -> str:
    """``""`` when the delivery is authentic, else why not (without echoing what was sent)."""
    if provider is Provider.GITHUB:
        sent = _one(request, GITHUB_SIGNATURE)
        if sent is None:
            return f"missing or repeated {GITHUB_SIGNATURE} header"
        expected = github_signature(body, secret).encode()
        if not hmac.compare_digest(expected, sent.strip().lower().encode("latin-1")):
            return "signature does not match the body"
        return ""
    if provider is Provider.GITLAB:
        token = _one(request, GITLAB_TOKEN)
        if token is None:
            return f"missing or repeated {GITLAB_TOKEN} header"
        if not hmac.compare_digest(secret.encode(), token.encode("latin-1")):
            return "token does not match"
        return ""
    return "no GitHub signature or GitLab token"


# --------------------------------------------------------------------------- payload


def _payload(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise errors.BadRequest("the webhook body is not JSON") from err
    except RecursionError:  # json's C decoder raises it past ~1000 levels of nesting
        raise errors.BadRequest("the webhook body is nested too deeply") from None
    if not isinstance(value, dict):
        raise errors.BadRequest("the webhook body is not a JSON object")
    return value


def _push_fields(payload: dict[str, Any]) -> tuple[str, str | None, bool]:
    """``(ref, after, deleted)`` of a push payload (GitHub and GitLab share these names)."""
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref or len(ref) > MAX_REF_CHARS:
        raise errors.BadRequest(f"a push payload needs a string ref of at most "
                                f"{MAX_REF_CHARS} characters")
    after = payload.get("after")
    if after is not None and (not isinstance(after, str) or not _SHA.match(after)):
        raise errors.BadRequest("a push payload's after must be a commit SHA")
    deleted = payload.get("deleted") is True or bool(after and _ZERO_SHA.match(after))
    return ref, after, deleted


def _event(request: Request, provider: Provider) -> str:
    name = GITHUB_EVENT if provider is Provider.GITHUB else GITLAB_EVENT
    event = _one(request, name)
    if event is None or not event.strip() or len(event) > MAX_EVENT_CHARS:
        raise errors.BadRequest(f"missing, repeated or oversized {name} header")
    return event.strip()


def _is_push(provider: Provider, event: str) -> bool:
    return event == ("push" if provider is Provider.GITHUB else GITLAB_PUSH)


# --------------------------------------------------------------------------- route


@router.post("/git", response_model=Envelope[WebhookResult], status_code=202,
             summary="Git push webhook (GitHub or GitLab)", responses=RESPONSES,
             openapi_extra=OPENAPI_EXTRA)
async def git_webhook(request: Request, settings: SettingsDep, log: AuditLogDep
                      ) -> JSONResponse:
    """Wake the reconciler on a push to the watched branch; authenticated by the shared secret."""
    configured = settings.api.webhook_secret
    secret = configured.get_secret_value() if configured is not None else ""
    if not secret:
        raise errors.NotConfigured("webhooks are disabled: no webhook secret is configured")
    provider = _provider(request)
    body = await request.body()  # the guard bounds it at api.max_body_bytes
    refusal = _verify(provider, request, body, secret)
    if refusal:
        await run_in_threadpool(partial(
            auth.record_denial, request, provider.actor, refusal, 401,
            {"bodyBytes": len(body)}, log=log, action=ACTION))
        raise errors.Unauthorized(f"webhook refused: {refusal}")

    event = _event(request, provider)
    payload = _payload(body)
    ref: str | None = None
    after: str | None = None
    fire = False
    if _is_push(provider, event):
        ref, after, deleted = _push_fields(payload)
        fire = ref == f"refs/heads/{settings.git.branch}" and not deleted

    trigger = deps.get_trigger(request) if fire else None  # 409 before anything is audited
    details: dict[str, Any] = {"event": event, "after": after, "triggered": fire}
    delivery = _one(request, GITHUB_DELIVERY)
    if delivery is not None:
        details["delivery"] = delivery[:64]
    await run_in_threadpool(log.append, audit.AuditEntry(
        actor=provider.actor, action=ACTION, target=ref or event,
        result=audit.AuditResult.SUCCEEDED,
        reason="reconcile requested" if fire else "no reconcile needed", details=details))
    if trigger is not None:
        await run_in_threadpool(trigger)
        message, status = f"reconcile requested for {ref}", 202
    elif ref is not None:
        message, status = f"{ref} is not the watched branch, or was deleted; ignored", 200
    else:
        message, status = f"{event} received", 200
    result = WebhookResult(triggered=fire, event=event, ref=ref, after=after)
    return JSONResponse(success(result, message).model_dump(mode="json", by_alias=True),
                        status_code=status)
