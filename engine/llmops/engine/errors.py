"""The one error hierarchy of llmops.

Every error carries what it is about: a spec error names the file, line,
column, spec and field; callers (the CLI, the API's exception handlers) map
these to exit codes, annotations and HTTP envelopes in one place each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class LlmopsError(Exception):
    """Base of every error llmops raises on purpose."""


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


class SpecError(LlmopsError):
    """A specs repo (or a revision of it) is invalid; carries every issue found."""

    def __init__(self, issues: Iterable[SpecIssue]) -> None:
        self.issues: tuple[SpecIssue, ...] = tuple(sorted(issues, key=SpecIssue.sort_key))
        if not self.issues:
            raise ValueError("SpecError needs at least one issue")
        super().__init__("\n".join(str(i) for i in self.issues))

    @classmethod
    def single(cls, file: str, message: str, **where: str | int) -> SpecError:
        return cls([SpecIssue(file=file, message=message, **where)])  # type: ignore[arg-type]
