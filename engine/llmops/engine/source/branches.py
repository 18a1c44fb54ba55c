"""Rendered branches: an environment's objects committed to git in the Argo CD hydrator format.

Input: the rendered objects of one environment, the dry commit they came from
(``DryCommit``, read by ``dry_commit``) and a target repo, branch and path.
Output: at most one new commit on the branch (``Hydrated`` says which), laid
out the way Argo CD's Source Hydrator writes a sync branch:

- ``<path>/manifest.yaml``: every object, sorted by namespace, name, group,
  kind, each document starting with ``---``;
- ``<path>/README.md``: how to reproduce the manifest from the dry commit;
- ``hydrator.metadata`` at the branch root: JSON with ``drySha``,
  ``repoURL``, ``author``, ``subject``, ``date``, ``body`` and
  ``references`` (taken from ``Argocd-reference-commit-*`` trailers of the
  dry commit, e.g. the application-code commit CI built an image from);
- a commit message ending in ``Argocd-reference-commit-*`` trailers
  describing the dry commit.

Called by ``llmops hydrate`` and the ``hydrate-branch`` actuator
(``llmops.engine.actuate.branch``, which also reads branches through
``open_repo``); ``writeback`` uses ``check_path``.

Safety and atomicity: the user's work tree, index and HEAD are never
touched. git runs through ``gitcli.Git`` (an environment built from scratch,
hooks off, no user string in an option position: the branch passes
``check_branch``, the path ``check_path``, revisions ``--end-of-options``) and
the commit is made by ``gitcommit``: a private index, ``commit-tree``, and
``update-ref <ref> <new> <old>``, so a reader sees the old commit or the new,
complete one, and a concurrent writer makes the update fail instead of being
overwritten (then the commit is rebuilt on the new tip). The dry commit is
read with ``gitobjects.read_commit``, the one commit parser.

Idempotence: when the branch already holds a byte-identical ``manifest.yaml``
at the path, nothing is committed. The objects carry no per-object source
commit (``llmops.io/source-commit`` is removed: it would change every object
on every dry commit and bury the real changes in a diff); the dry commit is
named once, in ``hydrator.metadata`` and the commit's trailers. So a dry
commit that changes nothing in the environment gives no hydrated commit, and
hydrating the same dry commit twice commits once.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llmops.engine import manifest
from llmops.engine.errors import LlmopsError
from llmops.engine.source import gitcli, gitcommit, gitobjects
from llmops.engine.types import KubeObject, ResourceKey

MANIFEST = "manifest.yaml"
README = "README.md"
METADATA = "hydrator.metadata"
TRAILER_PREFIX = "Argocd-reference-commit-"
GIT_TIMEOUT = 120.0
MAX_ATTEMPTS = 3
DEFAULT_AUTHOR = ("llmops", "llmops@localhost")
_REFERENCE = re.compile(r"Argocd-reference-commit-([a-z-]+)", re.I)
_PERSON = re.compile(r"^(?P<name>.*?)\s*<(?P<email>[^<>]*)>$")


class HydrateError(LlmopsError):
    """The rendered branch could not be read or written; the message says why."""


@dataclass(frozen=True, slots=True)
class DryCommit:
    """The commit of the specs repo the manifests were rendered from."""

    sha: str
    author_name: str
    author_email: str
    date: str
    """Author date, RFC 3339."""
    subject: str
    body: str
    repo_url: str
    references: tuple[Mapping[str, object], ...] = field(default=())

    @property
    def author(self) -> str:
        return f"{self.author_name} <{self.author_email}>"


@dataclass(frozen=True, slots=True)
class Hydrated:
    """What ``hydrate_branch`` did: ``changed`` False means the branch already held it."""

    branch: str
    path: str
    commit: str
    changed: bool
    previous: str | None


# ------------------------------------------------------------------ validation


def check_path(path: str) -> str:
    """A relative directory inside the branch (``""`` for the root); raise otherwise."""
    cleaned = path.strip().strip("/")
    if cleaned in ("", "."):
        return ""
    parts = cleaned.split("/")
    shown = repr(path[:120])
    if not cleaned.isprintable() or "\\" in cleaned:
        raise HydrateError(f"path {shown} contains a control character or a backslash")
    if any(p in ("", ".", "..") or p.lower() == ".git" or p.startswith("-") for p in parts):
        raise HydrateError(f"path {shown} must be a plain relative directory "
                           "(no '..', '.git', empty segments or leading '-')")
    return "/".join(parts)


# ------------------------------------------------------------------ running git


def open_repo(repo: Path, scratch: Path) -> gitcli.Git:
    """The git repository at ``repo``, run from ``scratch`` with a private index there."""
    try:
        return gitcli.Git.open(Path(repo), scratch, timeout=GIT_TIMEOUT)
    except gitcli.GitFailed as exc:
        raise HydrateError(f"{repo}: not a git repository ({exc.detail()})") from None


# ------------------------------------------------------------------ the dry commit


def _references(trailers: Iterable[tuple[str, str]]) -> tuple[dict[str, object], ...]:
    """One reference from the dry commit's own ``Argocd-reference-commit-*`` trailers."""
    found: dict[str, str] = {}
    for key, value in trailers:
        m = _REFERENCE.fullmatch(key)
        if m:
            found[m.group(1).lower()] = value
    if not found.get("sha"):
        return ()
    body = found.get("body", "")
    if body.startswith('"'):
        try:
            body = str(json.loads(body))
        except ValueError:
            pass
    person = _PERSON.match(found.get("author", ""))
    author = {"name": person.group("name"), "email": person.group("email")} if person else \
        {"name": found.get("author", ""), "email": found.get("author-email", "")}
    return ({"commit": {"author": author, "sha": found["sha"],
                        "subject": found.get("subject", ""), "body": body,
                        "repoURL": found.get("repourl", ""), "date": found.get("date", "")}},)


def dry_commit(repo: Path, rev: str = "HEAD") -> DryCommit:
    """Read commit ``rev`` (``HEAD``, a SHA or a branch) of the specs repo at ``repo``."""
    target = "HEAD" if rev == "HEAD" else gitcli.check_rev(rev)
    with tempfile.TemporaryDirectory(prefix="llmops-dry-") as scratch:
        git = open_repo(Path(repo), Path(scratch))
        sha = git.resolve(target)
        if sha is None:
            raise HydrateError(f"{repo}: revision {rev[:80]!r} does not name a commit")
        try:
            commit = gitobjects.read_commit(git, sha)
        except gitcli.GitFailed as exc:
            raise HydrateError(exc.detail()) from None
        try:
            url = git.text("config", "--get", "remote.origin.url").strip()
        except gitcli.GitFailed:
            url = ""
    # the hydrator's subject is the message's first line, its body the rest
    subject, _, body = commit.message.strip().partition("\n")
    repo_url = gitcli.redact(url) if url else Path(repo).resolve().as_uri()
    return DryCommit(sha=sha, author_name=commit.author_name, author_email=commit.author_email,
                     date=commit.authored_at.isoformat(), subject=subject.strip(),
                     body=body.strip(), repo_url=repo_url,
                     references=_references(commit.trailers))


# ------------------------------------------------------------------ content


def _unstamped(obj: KubeObject) -> KubeObject:
    """``obj`` without the per-object source commit (a copy when it had one)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if manifest.SOURCE_COMMIT_ANNOTATION not in annotations:
        return obj
    kept = {k: v for k, v in annotations.items() if k != manifest.SOURCE_COMMIT_ANNOTATION}
    meta = {k: v for k, v in obj["metadata"].items() if k != "annotations"}
    if kept:
        meta["annotations"] = kept
    return {**obj, "metadata": meta}


def manifest_text(objects: Iterable[KubeObject]) -> str:
    """All objects sorted by namespace, name, group, kind, as one ``---`` stream, without
    the per-object source commit (the dry commit is named once, in the metadata)."""

    def order(obj: KubeObject) -> tuple[str, str, str, str]:
        key = ResourceKey.of(obj)
        return (key.namespace, key.name, key.group, key.kind)

    return manifest.to_yaml(sorted((_unstamped(o) for o in objects), key=order))


def readme_text(dry: DryCommit, command: str) -> str:
    return (
        "# Manifest Hydration\n\n"
        "This directory is written by `llmops hydrate`; do not edit it by hand: the next\n"
        "hydration replaces it. To reproduce `manifest.yaml` from the dry source:\n\n"
        "```shell\n"
        f"git clone {dry.repo_url}\n"
        "# cd into the cloned directory\n"
        f"git checkout {dry.sha}\n"
        f"{command}\n"
        "```\n")


def metadata_text(dry: DryCommit) -> str:
    """``hydrator.metadata`` as Argo CD writes it: ``author`` one "Name <email>" string,
    and, like its ``omitempty`` fields, no empty ``body`` or ``references``."""
    data = {"author": dry.author, "subject": dry.subject, "date": dry.date, "body": dry.body,
            "drySha": dry.sha, "repoURL": dry.repo_url, "references": list(dry.references)}
    kept = {k: v for k, v in data.items() if v or k in ("drySha", "repoURL")}
    return json.dumps(kept, indent=2, ensure_ascii=False) + "\n"


def commit_message(dry: DryCommit, subject: str) -> str:
    """``subject``, then the dry commit as ``Argocd-reference-commit-*`` trailers."""
    trailers = {
        "author": dry.author, "author-email": dry.author_email, "sha": dry.sha,
        "subject": dry.subject, "body": json.dumps(dry.body, ensure_ascii=False),
        "repourl": dry.repo_url, "date": dry.date,
    }
    lines = [f"{TRAILER_PREFIX}{key}: {' '.join(value.split())}" if key != "body"
             else f"{TRAILER_PREFIX}{key}: {value}" for key, value in trailers.items()]
    return " ".join(subject.split()) + "\n\n" + "\n".join(lines) + "\n"


# ------------------------------------------------------------------ writing the branch


def hydrate_branch(repo: Path, branch: str, objects: Iterable[KubeObject], dry: DryCommit, *,
                   path: str = "", command: str = "", message: str = "",
                   author: tuple[str, str] = DEFAULT_AUTHOR) -> Hydrated:
    """Commit ``objects`` to ``branch`` of ``repo`` under ``path``; no-op if unchanged."""
    name = gitcli.check_branch(branch)
    where = check_path(path)
    prefix = f"{where}/" if where else ""
    manifest = f"{prefix}{MANIFEST}"
    files = {
        manifest: manifest_text(objects),
        f"{prefix}{README}": readme_text(dry, command or "llmops render ."),
        METADATA: metadata_text(dry),
    }
    text = commit_message(dry, message or f"llmops: hydrate {where or '.'} from {dry.sha[:12]}")
    ref = f"refs/heads/{name}"
    who = gitcommit.Identity(*author)
    with tempfile.TemporaryDirectory(prefix="llmops-hydrate-") as scratch:
        git = open_repo(Path(repo), Path(scratch))
        try:
            blobs = {rel: (gitobjects.REGULAR, gitcommit.write_blob(git, body.encode("utf-8")))
                     for rel, body in files.items()}
            for _attempt in range(MAX_ATTEMPTS):
                old = git.resolve(ref)
                held = gitobjects.entry_at(git, old, manifest) if old is not None else None
                if old is not None and held is not None and held.blob == blobs[manifest][1]:
                    return Hydrated(name, where, old, changed=False, previous=old)
                new = gitcommit.commit_files(git, old, blobs, text, author=who, committer=who)
                if gitcommit.swap_ref(git, ref, new, old, f"llmops hydrate: {dry.sha[:12]}"):
                    return Hydrated(name, where, new, changed=True, previous=old)
                # the branch moved under us: rebuild on its new tip
        except gitcli.GitFailed as exc:
            raise HydrateError(exc.detail()) from None
    raise HydrateError(f"branch {name} kept moving while hydrating; gave up after "
                       f"{MAX_ATTEMPTS} attempts")
