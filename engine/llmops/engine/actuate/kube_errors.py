"""How the ``kubernetes`` actuator reads API errors: what failed, why, and who to name.

Input: an ``ApiException`` (or a transport error) and the objects involved. Output:
a ``(reason, detail)`` pair for messages, the field managers of a conflict, whether
a status is worth retrying, and text with every Secret value masked, then redacted.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from llmops.engine import redact
from llmops.engine.errors import LlmopsError
from llmops.engine.plan import diff
from llmops.engine.types import ResourceKey

_MANAGER_RE = re.compile(r'conflict with "([^"]+)"')
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
PERMANENT_500 = (
    "range is full",
    "exceeded quota",
    "provided port is already allocated",
    "provided IP is already allocated",
)
"""What a 500 says when trying again cannot help: an exhausted Service IP or port range,
a quota. These fail the object at once instead of retrying in a loop."""


class ApplyError(LlmopsError):
    """One object could not be applied or deleted; formats as
    ``Deployment/llmops-prod/chat: dry-run failed (Conflict): …``."""

    def __init__(
        self,
        key: ResourceKey,
        phase: str,
        reason: str,
        detail: str,
        *,
        managers: tuple[str, ...] = (),
    ) -> None:
        self.key = key
        self.phase = phase
        self.reason = reason
        self.detail = detail
        self.managers = managers
        """For a field conflict: the field managers that own the contested fields."""
        super().__init__(f"{key}: {self.summary}")

    @property
    def summary(self) -> str:
        """The message without the object (the reconciler prefixes the key itself)."""
        return f"{self.phase} failed ({self.reason}): {self.detail}"


def status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def describe(exc: ApiException) -> tuple[str, str]:
    """(reason, detail) of an API error: field-manager conflicts name the manager and field."""
    body = status_body(exc)
    reason = str(body.get("reason") or exc.reason or exc.status)
    causes = [
        c for c in ((body.get("details") or {}).get("causes") or []) if isinstance(c, Mapping)
    ]
    conflicts = [c for c in causes if c.get("reason") == "FieldManagerConflict"]
    if exc.status == 409 and conflicts:
        detail = "; ".join(
            f"{c.get('message', 'conflict')} on {c.get('field', '?')}" for c in conflicts
        )
        return "Conflict", detail
    message = str(body.get("message") or exc.reason or "")
    return reason, message or f"HTTP {exc.status}"


def conflict_managers(detail: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_MANAGER_RE.findall(detail)))


def hand_edits_only(live: Mapping[str, Any], managers: Iterable[str]) -> bool:
    """Whether every manager owns its fields through plain writes (``Update``: kubectl
    edit/patch, a script), never through server-side apply: such changes are drift."""
    entries = [
        e
        for e in ((live.get("metadata") or {}).get("managedFields") or [])
        if isinstance(e, Mapping)
    ]
    for manager in managers:
        ops = {e.get("operation") for e in entries if e.get("manager") == manager}
        if ops != {"Update"}:
            return False
    return True


def retry_after(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        value = (status_body(exc).get("details") or {}).get("retryAfterSeconds")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _secret_values(obj: Mapping[str, Any] | None) -> list[str]:
    """The values (encoded and decoded) a Secret carries, longest first, to mask in text."""
    if not obj or obj.get("kind") != "Secret":
        return []
    found: set[str] = set()
    for field_name in ("data", "stringData"):
        for value in (obj.get(field_name) or {}).values():
            if not isinstance(value, str) or not value:
                continue
            found.add(value)
            if field_name == "data":
                try:
                    found.add(base64.b64decode(value, validate=True).decode())
                except (ValueError, UnicodeDecodeError):
                    pass
            else:
                found.add(base64.b64encode(value.encode()).decode())
    return sorted((v for v in found if len(v) >= 3), key=len, reverse=True)


def mask(text: str, *objects: Mapping[str, Any] | None) -> str:
    """``text`` without the values of the Secrets among ``objects``, then redacted."""
    for obj in objects:
        for value in _secret_values(obj):
            text = text.replace(value, diff.MASK)
    return redact.redact(text)


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return describe(exc)[0]
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return "Timeout"
    if isinstance(exc, ValueError):
        return "BadResponse"
    return "Unreachable"


def retryable(exc: ApiException) -> bool:
    """Whether trying ``exc``'s request again may succeed: 429 and 5xx, except a 500
    the API server means as permanent (an exhausted IP range, an exceeded quota)."""
    if exc.status not in RETRYABLE_STATUS:
        return False
    if exc.status == 500:
        text = describe(exc)[1].lower()
        return not any(words in text for words in PERMANENT_500)
    return True
