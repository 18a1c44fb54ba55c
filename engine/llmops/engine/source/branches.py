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

Called by ``llmops hydrate`` (and usable by the hydrate actuator).

Safety and atomicity: the user's work tree, index and HEAD are never
touched. Blobs and trees are written with git plumbing through a private
index (``GIT_INDEX_FILE`` in a temporary directory, git run from an empty
directory), the commit with ``commit-tree`` and the branch moved with
``update-ref <ref> <new> <old>``: a reader sees the old commit or the new,
complete one, never a half-written tree, and a concurrent writer makes the
update fail instead of being overwritten (then the commit is rebuilt on the
new tip). git runs with a scrubbed environment, no system or global config,
hooks off, and no user string in an option position: the branch passes
``check_branch``, the path ``check_path``, revisions ``--end-of-options``.

Idempotence: when the branch already holds a byte-identical ``manifest.yaml``
at the path, nothing is committed. Every object carries its dry commit
(``llmops.io/source-commit``), so hydrating the same dry commit twice commits
once, and each new dry commit gives one new hydrated commit.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from llmops.engine import manifest
from llmops.engine.errors import LlmopsError
from llmops.engine.source import gitcli
from llmops.engine.types import KubeObject, ResourceKey

MANIFEST = "manifest.yaml"
README = "README.md"
METADATA = "hydrator.metadata"
TRAILER_PREFIX = "Argocd-reference-commit-"
GIT_TIMEOUT = 120.0
MAX_ATTEMPTS = 3
DEFAULT_AUTHOR = ("llmops", "llmops@localhost")
_TRAILER = re.compile(r"^Argocd-reference-commit-([a-z-]+):\s?(.*)$", re.I)
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


class GitPlumbing:
    """git against one repository's git dir, from an empty directory, in a clean env."""

    def __init__(self, repo: Path, scratch: Path) -> None:
        self.scratch = scratch
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C",
            "HOME": str(scratch), "XDG_CONFIG_HOME": str(scratch / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_SYSTEM": "/dev/null",
            "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
            "GIT_NO_REPLACE_OBJECTS": "1", "GIT_INDEX_FILE": str(scratch / "index"),
        }
        self.pre = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
                    "-c", "commit.gpgSign=false", "-c", "gc.auto=0"]
        try:
            out = gitcli.run_git(["rev-parse", "--absolute-git-dir"], env=self.env, cwd=repo,
                                timeout=GIT_TIMEOUT, pre=self.pre)
        except gitcli.GitFailed as exc:
            raise HydrateError(f"{repo}: not a git repository ({exc.detail()})") from None
        self.pre = ["--git-dir", out.decode().strip(), *self.pre]

    def __call__(self, *argv: str, stdin: bytes | None = None,
                 extra_env: Mapping[str, str] | None = None) -> str:
        env = self.env | dict(extra_env or {})
        try:
            out = gitcli.run_git(argv, env=env, cwd=self.scratch, timeout=GIT_TIMEOUT,
                                stdin=stdin, pre=self.pre)
        except gitcli.GitFailed as exc:
            raise HydrateError(exc.detail()) from None
        return out.decode("utf-8", "replace")

    def resolve(self, rev: str) -> str | None:
        try:
            out = gitcli.run_git(["rev-parse", "--verify", "--quiet", "--end-of-options",
                                 f"{rev}^{{commit}}"], env=self.env, cwd=self.scratch,
                                timeout=GIT_TIMEOUT, pre=self.pre)
        except gitcli.GitFailed:
            return None
        sha = out.decode().strip()
        return sha if gitcli.SHA.fullmatch(sha) else None

    def blob_at(self, commit: str, path: str) -> str | None:
        """The blob id of ``path`` in ``commit``, None when absent."""
        out = self("ls-tree", "--full-tree", "-z", "--end-of-options", commit, "--", path)
        for entry in out.split("\0"):
            meta, _, name = entry.partition("\t")
            if name == path and meta.split(" ")[1:2] == ["blob"]:
                return meta.split(" ")[2]
        return None


# ------------------------------------------------------------------ the dry commit


def _rfc3339(stamp: str, zone: str) -> str:
    try:
        sign = -1 if zone.startswith("-") else 1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
        return datetime.fromtimestamp(int(stamp), timezone(offset)).isoformat()
    except (ValueError, OverflowError):
        return datetime.fromtimestamp(0, UTC).isoformat()


def _references(message: str) -> tuple[dict[str, object], ...]:
    """One reference from the dry commit's own ``Argocd-reference-commit-*`` trailers."""
    found: dict[str, str] = {}
    for line in message.strip().split("\n\n")[-1].splitlines():
        m = _TRAILER.match(line.strip())
        if m:
            found[m.group(1).lower()] = m.group(2).strip()
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
        git = GitPlumbing(Path(repo), Path(scratch))
        sha = git.resolve(target)
        if sha is None:
            raise HydrateError(f"{repo}: revision {rev[:80]!r} does not name a commit")
        raw = git("cat-file", "commit", sha)
        try:
            url = git("config", "--get", "remote.origin.url").strip()
        except HydrateError:
            url = ""
    head, _, message = raw.partition("\n\n")
    name, email, date = "", "", _rfc3339("0", "+0000")
    for line in head.split("\n"):
        key, _, value = line.partition(" ")
        if key == "author":
            who, _, when = value.rpartition(">")
            person = _PERSON.match(who + ">")
            if person:
                name, email = person.group("name"), person.group("email")
            stamp, _, zone = when.strip().partition(" ")
            date = _rfc3339(stamp, zone)
    subject, _, body = message.strip().partition("\n")
    repo_url = gitcli.redact(url) if url else Path(repo).resolve().as_uri()
    return DryCommit(sha=sha, author_name=name, author_email=email, date=date,
                     subject=subject.strip(), body=body.strip(), repo_url=repo_url,
                     references=_references(message))


# ------------------------------------------------------------------ content


def manifest_text(objects: Iterable[KubeObject]) -> str:
    """All objects sorted by namespace, name, group, kind, as one ``---`` stream."""

    def order(obj: KubeObject) -> tuple[str, str, str, str]:
        key = ResourceKey.of(obj)
        return (key.namespace, key.name, key.group, key.kind)

    return manifest.to_yaml(sorted(objects, key=order))


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
    data = {"author": dry.author, "subject": dry.subject, "date": dry.date, "body": dry.body,
            "drySha": dry.sha, "repoURL": dry.repo_url, "references": list(dry.references)}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


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
    files = {
        f"{prefix}{MANIFEST}": manifest_text(objects),
        f"{prefix}{README}": readme_text(dry, command or "llmops render ."),
        METADATA: metadata_text(dry),
    }
    subject = message or f"llmops: hydrate {where or '.'} from {dry.sha[:12]}"
    ref = f"refs/heads/{name}"
    with tempfile.TemporaryDirectory(prefix="llmops-hydrate-") as scratch:
        git = GitPlumbing(Path(repo), Path(scratch))
        blobs = {rel: git("hash-object", "-w", "--stdin", stdin=text.encode("utf-8")).strip()
                 for rel, text in files.items()}
        for _attempt in range(MAX_ATTEMPTS):
            old = git.resolve(ref)
            if old is not None and git.blob_at(old, f"{prefix}{MANIFEST}") == \
                    blobs[f"{prefix}{MANIFEST}"]:
                return Hydrated(name, where, old, changed=False, previous=old)
            (Path(scratch) / "index").unlink(missing_ok=True)
            if old is None:
                git("read-tree", "--empty")
            else:
                git("read-tree", "--end-of-options", f"{old}^{{tree}}")
            for rel, blob in blobs.items():
                git("update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}")
            tree = git("write-tree").strip()
            parents = ["-p", old] if old is not None else []
            identity = {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
                        "GIT_COMMITTER_NAME": author[0], "GIT_COMMITTER_EMAIL": author[1]}
            new = git("commit-tree", "--no-gpg-sign", *parents, tree,
                      stdin=commit_message(dry, subject).encode("utf-8"),
                      extra_env=identity).strip()
            expected = old if old is not None else "0" * len(new)
            try:
                git("update-ref", "-m", f"llmops hydrate: {dry.sha[:12]}", ref, new, expected)
            except HydrateError:
                continue  # the branch moved under us: rebuild on its new tip
            return Hydrated(name, where, new, changed=True, previous=old)
    raise HydrateError(f"branch {name} kept moving while hydrating; gave up after "
                       f"{MAX_ATTEMPTS} attempts")
