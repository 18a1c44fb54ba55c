"""The one error hierarchy of llmops: a base, a few categories, the spec errors.

Role: every error llmops raises on purpose is an ``LlmopsError``, and the ones
a caller can act on also belong to one *category* below. The category, not
the concrete class, decides what a user sees: ``llmops.api.errors`` maps each
category to one HTTP status, ``llmops.cli.main`` to one exit code. A class
elsewhere joins a category by inheriting from it (``class
RepoUnavailable(WriteError, errors.Unavailable)``); its first category in
method-resolution order wins. Errors outside every category are internal
failures (HTTP 500; exit 1 with the message).

| category | HTTP | exit | meaning |
|---|---|---|---|
| ``InvalidInput`` | 422 | 1 | understood, but not acceptable (specs, edits, names) |
| ``Malformed`` | 400 | 1 | the request itself is broken (a body of another length) |
| ``NotFound`` | 404 | 1 | no such thing |
| ``Conflict`` | 409 | 1 | ambiguous, already so, or moved meanwhile |
| ``Forbidden`` | 403 | 1 | identified, but not allowed |
| ``TooLarge`` | 413 | 1 | over a size limit |
| ``Unavailable`` | 503 | 1 | a service (git remote, S3, the store) failed: retry later |

Every error carries what it is about: the message names the object or file;
``details`` holds facts a client may see (JSON values, shown as the
envelope's ``data``); a spec error names the file, line, column, spec and
field of each issue. Input: none (a bottom module). Output: the classes.
Callers: every package of llmops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class LlmopsError(Exception):
    """Base of every error llmops raises on purpose."""

    details: Mapping[str, Any] | None = None
    """What a client may see besides the message (JSON values), or None."""

    def __init__(self, *args: object, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(*args)
        if details is not None:
            self.details = dict(details)


# --------------------------------------------------------------------------- categories


class InvalidInput(LlmopsError):
    """Input that is understood but not acceptable; ``issues`` lists spec issues, if any."""

    issues: tuple[SpecIssue, ...] | None = None


class Malformed(LlmopsError):
    """A request that is broken as a whole (e.g. a body shorter than announced)."""


class NotFound(LlmopsError):
    """What was asked for does not exist."""


class Conflict(LlmopsError):
    """Ambiguous, already as requested, or changed by someone else meanwhile."""


class Forbidden(LlmopsError):
    """The caller is known but may not do this."""


class TooLarge(LlmopsError):
    """Over a size limit."""


class Unavailable(LlmopsError):
    """A service llmops depends on failed or cannot be reached; retrying may succeed."""


CATEGORIES: tuple[type[LlmopsError], ...] = (
    InvalidInput, Malformed, NotFound, Conflict, Forbidden, TooLarge, Unavailable)


def category(exc: BaseException) -> type[LlmopsError] | None:
    """The first category in ``exc``'s method-resolution order, or None (internal)."""
    for cls in type(exc).__mro__:
        if cls in CATEGORIES:
            return cls
    return None


# --------------------------------------------------------------------------- spec errors


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem in a specs repo, located as precisely as it is known."""

    file: str
    message: str
    line: int = 0
    column: int = 0
    kind: str = ""
    name: str = ""
    field: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column or 1}"
        parts = [where]
        if self.kind or self.name:
            parts.append(f"{self.kind or '?'}/{self.name or '?'}")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)

    def as_dict(self) -> dict[str, str | int]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "kind": self.kind,
            "name": self.name,
            "field": self.field,
            "message": self.message,
        }

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.column, self.message)


class SpecError(InvalidInput):
    """A specs repo (or a revision of it) is invalid; carries every issue found."""

    def __init__(self, issues: Iterable[SpecIssue]) -> None:
        self.issues: tuple[SpecIssue, ...] = tuple(sorted(issues, key=SpecIssue.sort_key))
        if not self.issues:
            raise ValueError("SpecError needs at least one issue")
        super().__init__("\n".join(str(i) for i in self.issues))

    @classmethod
    def single(cls, file: str, message: str, **where: str | int) -> SpecError:
        return cls([SpecIssue(file=file, message=message, **where)])  # type: ignore[arg-type]
