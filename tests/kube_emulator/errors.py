"""`ApiError`: a failure shaped like the apiserver's `Status` body.

Raised anywhere in the emulator; `server` turns it into an HTTP response with the
matching code. Constructors mirror apimachinery's `k8s.io/apimachinery/pkg/api/errors`
so messages read like a real cluster's (`deployments.apps "web" not found`).
"""

from __future__ import annotations

from typing import Any

from .catalog import ResourceType


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rt: ResourceType | None, name: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if rt is not None:
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
    details.update(extra)
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists',
                    _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.qualified} '
                    f'"{name}": {why}', _details(rt, name))


def stale(rt: ResourceType, name: str) -> ApiError:
    return conflict(rt, name, "the object has been modified; please apply your changes "
                    "to the latest version and try again")


def apply_conflict(conflicts: list[tuple[str, str]]) -> ApiError:
    """`conflicts` holds (printed manager, field path) pairs, e.g. ('"helm"', ".spec.replicas").

    Mirrors apiserver `fieldmanager/internal/conflict.go`: one cause per field with
    reason `FieldManagerConflict`, details without name or kind.
    """
    if len(conflicts) == 1:
        m, f = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {m}: {f}"
    else:
        lines: list[str] = []
        for manager in sorted({m for m, _ in conflicts}):
            lines.append(f"conflict with {manager}:")
            lines.extend(f"- {f}" for m, f in conflicts if m == manager)
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {m}", "field": f}
              for m, f in conflicts]
    return ApiError(409, "Conflict", message, {"causes": causes})


def invalid(rt: ResourceType | None, kind: str, name: str,
            causes: list[tuple[str, str, str]]) -> ApiError:
    """`causes` holds (reason type, field, message) triples, e.g.
    ("FieldValueInvalid", "metadata.name", "Invalid value: ...")."""
    text = ", ".join(f"{f}: {m}" for _, f, m in causes)
    details = _details(rt, name, causes=[{"reason": r, "message": m, "field": f}
                                          for r, f, m in causes])
    if rt is not None:
        details["kind"] = kind
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: application/json-patch+json, application/merge-patch+json, "
                    f"application/apply-patch+yaml (got {content_type!r})")
