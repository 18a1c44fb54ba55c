"""Rollback: the spec file as it was applied before, read from the specs repo's history.

Input: a specs repo (local path or remote mirror), the spec's ``Target``, the
applied revision and the environment's applied history (the store's
succeeded runs, newest first). Output: ``Previous`` (the text to restore and
where it came from) and ``restore``, the edit that writes it back. Caller:
``llmops.engine.service.writes.WriteService.rollback_endpoint``, which commits
the edit through ``writeback.commit_edit``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from llmops.engine.source import branches, gitcli
from llmops.engine.source.writeback import (
    MAX_HISTORY,
    Edit,
    NothingToWrite,
    Repo,
    RepoUnavailable,
    Target,
    TargetMissing,
    git_errors,
    open_scratch,
    read_file,
    synced,
)


def _spec_data(text: str, kind: str, name: str) -> Any:
    """The plain data of the ``kind``/``name`` document of ``text`` (None when absent)."""
    yaml = YAML(typ="safe", pure=True)
    try:
        docs = list(yaml.load_all(text))
    except YAMLError:
        return None
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == kind and \
                isinstance(doc.get("metadata"), dict) and doc["metadata"].get("name") == name:
            return doc
    return None


@dataclass(frozen=True, slots=True)
class Previous:
    """The spec file as it was before the applied change, and where it came from."""

    text: str
    revision: str
    changed_by: str
    """The commit that replaced it (the one being rolled back)."""


def previous_version(repo: Repo, target: Target, applied: str, tracked: str = "main",
                     history: Sequence[str] = ()) -> Previous:
    """The spec as it was applied before ``applied``.

    ``history``: the revisions the environment applied, newest first (the
    store's succeeded runs); the newest one older than ``applied`` whose spec
    differs gives the content to return to, so a version that was committed
    but never applied (blocked by a policy, say) is never restored. When the
    store knows no applied revision before ``applied`` (it is newer than the
    repo's history), ``git log <applied> -- <file>``: the newest commit whose
    first parent holds a different spec. Comments and layout do not count.
    ``NothingToWrite`` when there is no such version. A remote's mirror has
    ``tracked`` fetched first.
    """
    if isinstance(repo, Path):
        return _previous_local(repo, target, applied, history)
    with synced(repo, gitcli.check_branch(tracked)) as mirror:
        return _previous_local(mirror, target, applied, history)


def _previous_local(repo: Path, target: Target, applied: str,
                    history: Sequence[str]) -> Previous:
    file = branches.check_path(target.file)
    if not gitcli.ABBREV.fullmatch(applied):
        raise NothingToWrite(f"{target.kind}/{target.name}: no applied revision to roll back "
                             "from")
    with tempfile.TemporaryDirectory(prefix="llmops-history-") as tmp, git_errors():
        git = open_scratch(repo, Path(tmp))
        head = git.resolve(applied)
        if head is None:
            raise RepoUnavailable(f"the applied revision {applied[:12]} is not in the specs "
                                  "repo")
        current = read_file(git, head, file)
        if current is None:
            raise TargetMissing(f"{target.kind}/{target.name}: {file} is not in {applied[:12]}")
        want = _spec_data(current[1], target.kind, target.name)
        earlier = [c for c in (git.resolve(r) for r in history)
                   if c is not None and c != head and git.is_ancestor(c, head)]
        if earlier:
            return _previous_applied(git, target, head, want, earlier)
        log = git.text("log", f"--max-count={MAX_HISTORY}", "--format=%H",
                       "--end-of-options", head, "--", file)
        for commit in log.split():
            parent = git.resolve(f"{commit}^1")
            before = read_file(git, parent, file) if parent is not None else None
            if before is None:
                break  # the file starts here: nothing earlier to return to
            if _spec_data(before[1], target.kind, target.name) != want:
                return Previous(text=before[1], revision=parent or "", changed_by=commit)
    raise NothingToWrite(f"{target.kind}/{target.name}: no earlier version of the spec to "
                         "roll back to")


def _previous_applied(git: gitcli.Git, target: Target, head: str, want: Any,
                      earlier: Sequence[str]) -> Previous:
    """The newest of the ``earlier`` applied commits (newest first) whose spec differs."""
    newer = head
    for commit in earlier:
        before = read_file(git, commit, target.file)
        if before is not None and _spec_data(before[1], target.kind, target.name) != want:
            return Previous(text=before[1], revision=commit, changed_by=newer)
        newer = commit
    raise NothingToWrite(f"{target.kind}/{target.name}: no earlier applied version of the "
                         "spec to roll back to")


def restore(previous: Previous) -> Edit:
    def edit(_text: str) -> str:
        return previous.text
    return edit
