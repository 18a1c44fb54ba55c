"""Printing for the CLI: spec issues as text, JSON or GitHub annotations.

Role: one format for spec issues everywhere in the CLI. Input: ``SpecIssue``
values (or a valid ``SpecSet``) and a format (``text``, ``json``,
``github``). Output: lines on a stream (stdout unless given); returns
nothing. Callers: ``llmops validate``, ``llmops plan`` and ``llmops.cli.main``
(which prints the issues of any invalid-input error to stderr).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

from llmops.engine.errors import SpecIssue

if TYPE_CHECKING:
    from llmops.engine.spec.validate import SpecSet


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def github_annotation(issue: SpecIssue) -> str:
    props = [f"file={_gh_escape(issue.file, True)}"]
    if issue.line:
        props += [f"line={issue.line}", f"col={issue.column or 1}"]
    if issue.kind or issue.name:
        props.append(f"title={_gh_escape(f'{issue.kind}/{issue.name}', True)}")
    message = f"{issue.field}: {issue.message}" if issue.field else issue.message
    return f"::error {','.join(props)}::{_gh_escape(message)}"


def print_issues(issues: Iterable[SpecIssue], fmt: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    issues = list(issues)
    if fmt == "json":
        json.dump([i.as_dict() for i in issues], out, indent=2)
        out.write("\n")
        return
    for issue in issues:
        out.write((github_annotation(issue) if fmt == "github" else str(issue)) + "\n")
    files = len({i.file for i in issues})
    summary = f"{len(issues)} error{'s' * (len(issues) != 1)} in {files} file{'s' * (files != 1)}"
    if fmt == "github":
        out.write(f"{summary}\n")
    else:
        out.write(f"\n{summary}\n")


def print_valid(spec_set: SpecSet, fmt: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    if fmt == "json":
        out.write("[]\n")
        return
    kinds = Counter(str(item.spec.kind) for item in spec_set.items)
    files = len({item.document.file for item in spec_set.items})
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    envs = ", ".join(spec_set.config.environments)
    out.write(f"valid: {len(spec_set.items)} specs in {files} files ({detail}); "
              f"environments: {envs}\n")
