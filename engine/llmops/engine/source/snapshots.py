"""The source stage: a specs repo (git URL, local repo or plain folder) -> a ``Snapshot``.

Input: the configured repo URL or path, a branch and a private work directory.
Output: a ``Snapshot`` naming the resolved commit SHA (and its author, subject,
changed files), and ``load(snapshot)``: that commit's YAML files loaded
(``loader.Loaded``) for the validate stage. Called by the reconciler
(``fetch`` and ``load`` on every cycle, ``snapshot_at`` for plans) and by the
CLI through ``open_source``.

The repo is untrusted input and git is a large attack surface, so git runs
only through ``gitcli.Git`` (see ``gitcli`` for the environment and the
hardening flags; GitPython is not the runner):

- URLs are allow-listed by ``gitcli.parse_url`` (``https://``, ``ssh://``,
  ``git@host:path``, ``file://``, local paths; ``http://`` only when asked
  for), hosts checked against ``allowed_hosts``; branches pass
  ``gitcli.check_branch``, revisions ``gitcli.check_rev``.
- The URL travels in the environment as ``remote.origin.url`` (in no argv,
  no file on disk and no ``ps`` line); only its protocol is allowed, fetched
  objects are fsck'd, nothing of a submodule is cloned.
- Fetches go into a private bare mirror (``work_dir/mirror.git``); nothing
  is ever checked out. ``fetch`` lists the commit's tree (``ls-tree``: unsafe
  or colliding paths make the snapshot unavailable) and reads the YAML blobs
  the previous revisions did not hold through one ``cat-file --batch``, into
  memory: a one-file commit reads one blob and writes no file, and ``load``
  parses only what the parse cache has not seen. A tree holding a link, or a
  file over a loader cap, is written instead by ``gitobjects.export`` (links
  created as links and never resolved, so the loader rejects them with an
  error naming the link) into ``work_dir/tmp-*``, renamed to
  ``work_dir/<sha>`` (content-addressed, reused, read-only) and loaded from
  there, so every message stays the one a checkout gives.
- A failed fetch raises ``SourceUnavailable`` and keeps ``last_good``: it is
  never mistaken for an empty repo. Every message and ``repr`` is redacted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from llmops.engine import lockfile
from llmops.engine.errors import Unavailable
from llmops.engine.source import gitcli, gitobjects
from llmops.engine.source.gitcli import SourceConfigError as SourceConfigError
from llmops.engine.source.gitcli import redact as redact
from llmops.engine.spec import loader

log = logging.getLogger(__name__)

KEEP_SNAPSHOTS = 3
MAX_TREE_ENTRIES = gitobjects.MAX_TREE_ENTRIES
MAX_BLOB_BYTES = 64 * 1024 * 1024
"""Blobs above this are written as sparse files of their size (content unread)."""
_MISSING_REF = ("couldn't find remote ref", "not our ref", "no such remote ref")


class SourceUnavailable(Unavailable):
    """The source could not be read this time (network, auth, timeout, missing branch).

    The state of the repo is unknown, not empty: callers keep the last good
    snapshot and prune nothing. The message is redacted.
    """


class RevisionNotFound(SourceUnavailable):
    """``snapshot_at`` was asked for a revision the source does not hold."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One revision of the specs repo; ``Source.load`` reads its files."""

    revision: str
    path: Path | None
    """The folder holding the files (a local folder, ``commits.snapshot``'s export);
    None for a commit a ``GitSource`` reads from git objects."""
    author: str
    subject: str
    committed_at: datetime
    repo_url: str
    files_changed: frozenset[str] | None = None


class Source(Protocol):
    """What the reconciler needs from a source; both sources here provide it."""

    @property
    def last_good(self) -> Snapshot | None: ...

    def fetch(self) -> Snapshot: ...

    def snapshot_at(self, rev: str) -> Snapshot: ...

    def load(self, snapshot: Snapshot, *,
             cache: loader.ParseCache | None = loader.DEFAULT_CACHE) -> loader.Loaded: ...


@dataclass(frozen=True, slots=True)
class _Tree:
    """A commit's YAML files as the loader reads them, (path, blob SHA, content) in
    memory; ``files`` is None when the tree was exported (it holds a link or a file over
    a loader cap) and is loaded from ``work_dir/<sha>``."""

    files: tuple[tuple[str, str, bytes], ...] | None


def _in_memory(entries: list[gitobjects.TreeEntry], yaml: list[gitobjects.TreeEntry],
               limits: loader.Limits) -> bool:
    """Whether the loader can read ``yaml`` from memory: the tree holds no link at all (a
    link to a folder would bring more files into a checkout) and the YAML files are within
    the loader's caps."""
    return (not any(e.is_link for e in entries) and len(yaml) <= limits.max_files
            and gitobjects.loadable_in_memory(yaml, limits))


def _rmtree(path: Path) -> None:
    """Delete a (read-only) snapshot tree without following any link in it."""
    gitobjects.chmod_dirs(path, 0o700)
    if path.is_dir() and not path.is_symlink():
        os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _locked(work_dir: Path) -> Iterator[None]:
    """The work directory to this process (``lockfile``, a bounded wait): a holder that
    is stopped or hung makes this read unavailable, never a hang."""
    try:
        fd = lockfile.acquire(work_dir / ".lock")
    except OSError as exc:
        raise SourceUnavailable(f"{work_dir}: cannot lock the work directory: "
                                f"{exc.strerror or exc}") from None
    try:
        yield
    finally:
        lockfile.release(fd)


# ------------------------------------------------------------------- git source


class GitSource:
    """A branch of a git repo, mirrored into ``work_dir`` and materialised per commit."""

    def __init__(self, url_or_path: str, branch: str, work_dir: Path, *,
                 timeout: float = 60.0, allowed_hosts: Sequence[str] = (),
                 allow_http: bool = False, keep: int = KEEP_SNAPSHOTS) -> None:
        self._remote = gitcli.parse_url(url_or_path, allowed_hosts=allowed_hosts,
                                       allow_http=allow_http)
        self.branch = gitcli.check_branch(branch) if branch else ""
        """The followed branch; empty until the first fetch reads the repo's HEAD."""
        self._allowed_hosts = tuple(allowed_hosts)
        self._allow_http = allow_http
        if not timeout > 0:
            raise SourceConfigError(f"timeout must be positive, got {timeout!r}")
        self.url = self._mask(self._remote.url)
        self.work_dir = Path(work_dir).absolute()
        self.timeout = float(timeout)
        self.keep = max(1, keep)
        self._mirror = self.work_dir / "mirror.git"
        self._home = self.work_dir / "home"
        self._last_good: Snapshot | None = None
        self._trees: dict[str, _Tree] = {}
        """The trees last read (at most ``keep``, and ``last_good``'s), oldest first."""
        self._lock = threading.Lock()
        self._git = gitcli.Git(self._mirror, home=self._home, remote=self._remote,
                               timeout=max(self.timeout, 120.0),
                               follow_redirects=not allowed_hosts)

    def __repr__(self) -> str:
        return f"GitSource({self.url!r}, branch={self.branch!r})"

    @property
    def last_good(self) -> Snapshot | None:
        """The last snapshot ``fetch`` returned; kept across failed fetches."""
        return self._last_good

    def _mask(self, text: str) -> str:
        return gitcli.mask(text, self._remote.secrets)

    # --- git plumbing

    def _unavailable(self, what: str, exc: gitcli.GitFailed) -> SourceUnavailable:
        return SourceUnavailable(self._mask(f"{self.url} ({self.branch}): {what}: "
                                            f"{exc.detail()}"))

    def _fetch(self, spec: str, *, prune: bool = False) -> None:
        """``git fetch origin <spec>`` into the mirror, within the network timeout."""
        self._git.run("fetch", "--quiet", "--no-tags", *(["--prune"] if prune else []),
                      "--no-recurse-submodules", "--no-write-fetch-head", "--no-auto-gc",
                      "--end-of-options", "origin", spec, timeout=self.timeout)

    def _follow_head(self) -> None:
        """With no branch configured, the branch the repo's HEAD names, read once."""
        if self.branch:
            return
        try:
            self.branch = gitcli.default_branch(self._remote.url, timeout=self.timeout,
                                                allowed_hosts=self._allowed_hosts,
                                                allow_http=self._allow_http)
        except gitcli.GitFailed as exc:
            raise self._unavailable("cannot read the default branch (HEAD)", exc) from None
        log.info("source %s: following its default branch %s", self.url, self.branch)

    def _prepare(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._home.mkdir(mode=0o700, exist_ok=True)
        for leftover in self.work_dir.glob("tmp-*"):
            _rmtree(leftover)
        try:
            gitcli.init_mirror(self._mirror, home=self._home)
        except gitcli.GitFailed as exc:
            raise self._unavailable("cannot create the mirror", exc) from None

    # --- public API

    def fetch(self) -> Snapshot:
        """Fetch the branch and read its head commit; keep ``last_good`` on failure."""
        with self._lock:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            with _locked(self.work_dir):
                self._prepare()
                self._follow_head()
                ref = f"refs/heads/{self.branch}"
                try:
                    self._fetch(f"+{ref}:{ref}", prune=True)
                except gitcli.GitFailed as exc:
                    raise self._unavailable("fetch failed", exc) from None
                sha = self._git.resolve(ref)
                if sha is None:
                    raise SourceUnavailable(self._mask(f"{self.url}: branch {self.branch} "
                                                       "does not resolve to a commit"))
                prev = self._last_good
                if prev is not None and prev.revision == sha:
                    # Nothing new: no commit to read, nothing to prune or pack.
                    self._last_good = snap = dataclasses.replace(prev, files_changed=frozenset())
                else:
                    changed = self.changed_files(prev.revision, sha) if prev else None
                    snap = self._snapshot(sha, changed)
                    self._last_good = snap
                    self._prune({sha})
                    self._gc()
        log.info("source %s (%s) at %s", self.url, self.branch, sha[:12])
        return snap

    def snapshot_at(self, rev: str, *, against: str | None = None) -> Snapshot:
        """Read commit ``rev``: a SHA (fetched if the mirror lacks it) or a branch
        (always fetched fresh). ``files_changed`` is against ``against`` if given, else None.
        """
        target = gitcli.check_rev(rev)
        if against is not None and not gitcli.ABBREV.fullmatch(against):
            raise SourceConfigError(f"against={against[:80]!r} is not a commit SHA")
        with self._lock:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            with _locked(self.work_dir):
                self._prepare()
                sha = self._resolve_or_fetch(rev, target)
                changed = self.changed_files(against, sha) if against else None
                snap = self._snapshot(sha, changed)
                self._prune({sha})
        return snap

    def _resolve_or_fetch(self, rev: str, target: str) -> str:
        is_ref = target.startswith("refs/")
        sha = None if is_ref else self._git.resolve(target)
        if sha is None and (is_ref or gitcli.SHA.fullmatch(target)):
            try:
                self._fetch(f"+{target}:{target}" if is_ref else target)
            except gitcli.GitFailed as exc:
                missing = any(m in exc.stderr for m in _MISSING_REF)
                error = RevisionNotFound if missing else SourceUnavailable
                raise error(self._mask(f"{self.url}: cannot fetch revision {rev!r}: "
                                       f"{exc.detail()}")) from None
            sha = self._git.resolve(target)
        if sha is None:
            raise RevisionNotFound(self._mask(f"{self.url}: revision {rev!r} "
                                              "does not name a commit"))
        return sha

    def changed_files(self, old: str, new: str) -> frozenset[str] | None:
        """Paths that differ between two commits of the mirror; None if unknown."""
        if old == new:
            return frozenset()
        if not (gitcli.ABBREV.fullmatch(old) and gitcli.ABBREV.fullmatch(new)):
            return None
        try:
            out = self._git.run("diff-tree", "-r", "--no-commit-id", "--name-only", "-z",
                                "--no-renames", "--no-ext-diff", "--no-textconv",
                                "--end-of-options", old, new)
        except gitcli.GitFailed:
            return None
        return frozenset(os.fsdecode(p) for p in out.split(b"\0") if p)

    def is_ancestor(self, old: str, new: str) -> bool:
        """Whether ``old`` is an ancestor of ``new`` (False after a force-push elsewhere)."""
        if not (gitcli.SHA.fullmatch(old) and gitcli.SHA.fullmatch(new)):
            raise SourceConfigError("is_ancestor takes two full commit SHAs")
        try:
            self._git.run("merge-base", "--is-ancestor", "--end-of-options", old, new)
        except gitcli.GitFailed as exc:
            if exc.returncode == 1:
                return False
            raise self._unavailable("cannot compare commits", exc) from None
        return True

    def load(self, snapshot: Snapshot, *,
             cache: loader.ParseCache | None = loader.DEFAULT_CACHE) -> loader.Loaded:
        """The YAML files of ``snapshot`` loaded: from memory as ``fetch`` read them (read
        again if evicted since), or from its export when the tree needed one."""
        sha = snapshot.revision
        tree = self._trees.get(sha)
        if tree is None:
            with self._lock:
                self.work_dir.mkdir(parents=True, exist_ok=True)
                with _locked(self.work_dir):
                    self._prepare()
                    tree = self._read_tree(sha)
        if tree.files is None:
            with self._lock, _locked(self.work_dir):
                root = self._materialise(sha)
            return loader.load_repo(root, loader.DEFAULT_LIMITS, cache)
        return loader.load_contents(f"{self.url}@{sha[:12]}",
                                    ((path, data) for path, _, data in tree.files),
                                    loader.DEFAULT_LIMITS, cache)

    # --- reading trees

    def _snapshot(self, sha: str, changed: frozenset[str] | None) -> Snapshot:
        try:
            commit = gitobjects.read_commit(self._git, sha)
        except gitcli.GitFailed as exc:
            raise self._unavailable(f"cannot read commit {sha[:12]}", exc) from None
        self._read_tree(sha)
        return Snapshot(revision=sha, path=None, author=commit.author,
                        subject=commit.subject, committed_at=commit.committed_at,
                        repo_url=self.url, files_changed=changed)

    def _read_tree(self, sha: str) -> _Tree:
        """List the tree of ``sha`` (refusing an unsafe one) and read its YAML blobs that
        the trees held do not; export it instead when the loader must see it on disk."""
        tree = self._trees.pop(sha, None)
        if tree is None:
            entries = self._list_tree(sha)
            yaml = [e for e in entries if not e.is_link and gitobjects.is_yaml(e.parts)]
            if _in_memory(entries, yaml, loader.DEFAULT_LIMITS):
                tree = _Tree(self._contents(yaml, f"commit {sha[:12]}"))
            else:
                self._materialise(sha, entries)
                tree = _Tree(None)
        self._trees[sha] = tree  # the newest last
        held = {self._last_good.revision} if self._last_good is not None else set()
        for old in list(self._trees)[:-self.keep]:
            if old not in held:
                del self._trees[old]
        return tree

    def _list_tree(self, sha: str) -> list[gitobjects.TreeEntry]:
        """The entries of commit ``sha``'s tree; an unsafe tree is ``SourceUnavailable``."""
        try:
            return gitobjects.list_tree(self._git, sha, label=f"commit {sha[:12]}",
                                        max_entries=MAX_TREE_ENTRIES)
        except gitcli.GitFailed as exc:
            raise self._unavailable(f"cannot list commit {sha[:12]}", exc) from None
        except gitobjects.UnsafeTree as exc:
            raise SourceUnavailable(str(exc)) from None

    def _contents(self, yaml: list[gitobjects.TreeEntry],
                  label: str) -> tuple[tuple[str, str, bytes], ...]:
        """(path, blob, content) of ``yaml``; only blobs no held tree has are read."""
        known = {blob: data for tree in self._trees.values() if tree.files is not None
                 for _, blob, data in tree.files}
        try:
            gitobjects.read_missing(self._git, yaml, known, label)
        except gitcli.GitFailed as exc:
            raise self._unavailable(f"cannot read the files of {label}", exc) from None
        except gitobjects.UnsafeTree as exc:
            raise SourceUnavailable(str(exc)) from None
        return tuple((e.path, e.blob, known[e.blob]) for e in yaml)

    def _materialise(self, sha: str, entries: list[gitobjects.TreeEntry] | None = None
                     ) -> Path:
        final = self.work_dir / sha
        if final.is_dir() and not final.is_symlink():
            os.utime(final)
            return final
        label = f"commit {sha[:12]}"
        if entries is None:
            entries = self._list_tree(sha)
        tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=self.work_dir))
        try:
            gitobjects.export(self._git, entries, tmp, label=label,
                              max_blob_bytes=MAX_BLOB_BYTES, read_only=True)
            tmp.rename(final)
        except gitcli.GitFailed as exc:
            _rmtree(tmp)
            raise self._unavailable(f"cannot read the files of {sha[:12]}", exc) from None
        except gitobjects.UnsafeTree as exc:
            _rmtree(tmp)
            raise SourceUnavailable(str(exc)) from None
        except BaseException:
            _rmtree(tmp)
            raise
        os.chmod(final, 0o555)
        return final

    def _prune(self, protect: set[str]) -> None:
        if self._last_good is not None:
            protect = protect | {self._last_good.revision}
        dirs = [p for p in self.work_dir.iterdir()
                if gitcli.SHA.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
        dirs.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in dirs[self.keep:]:
            if old.name not in protect:
                _rmtree(old)

    def _gc(self) -> None:
        try:
            self._git.run("gc", "--auto", "--quiet")
        except gitcli.GitFailed as exc:  # housekeeping: never fails a fetch
            log.warning("source %s: %s", self.url, self._mask(exc.detail()))


# ----------------------------------------------------------------- local source


class LocalSource:
    """A plain directory read as it is; its revision is a hash of its YAML files."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        text = os.fspath(path)
        if not text or not text.isprintable() or text.startswith("-"):
            raise SourceConfigError(f"{text[:200]!r}: not a usable directory path")
        self.path = Path(text).resolve()
        self._last_good: Snapshot | None = None
        self._blobs: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"LocalSource({str(self.path)!r})"

    @property
    def last_good(self) -> Snapshot | None:
        return self._last_good

    def _scan(self) -> dict[str, str]:
        """{relative path: blob SHA or link marker} of what the loader would look at."""
        found: dict[str, str] = {}

        def fail(exc: OSError) -> None:
            raise exc

        for dirpath, dirnames, filenames in os.walk(self.path, onerror=fail):
            base = Path(dirpath)
            kept = []
            for name in sorted(d for d in dirnames if not d.startswith(".")):
                if (base / name).is_symlink():  # the loader reports it; it never follows it
                    found[(base / name).relative_to(self.path).as_posix()] = \
                        "link:" + os.readlink(base / name)
                else:
                    kept.append(name)
            dirnames[:] = kept
            for name in filenames:
                if name.startswith(".") or not name.endswith(loader.YAML_SUFFIXES):
                    continue
                full = base / name
                info = os.lstat(full)
                found[full.relative_to(self.path).as_posix()] = (
                    "link:" + os.readlink(full) if stat.S_ISLNK(info.st_mode)
                    else _file_blob_sha(full, info))
        return found

    def fetch(self) -> Snapshot:
        try:
            if not self.path.is_dir():
                raise NotADirectoryError(self.path)
            blobs = self._scan()
        except OSError as exc:
            raise SourceUnavailable(f"{self.path}: cannot read the directory "
                                    f"({exc.strerror or type(exc).__name__})") from None
        digest = hashlib.sha256()
        for rel in sorted(blobs):
            digest.update(f"{rel}\0{blobs[rel]}\0".encode("utf-8", "surrogateescape"))
        revision = "local-" + digest.hexdigest()[:40]  # fits the 64-character revision columns
        prev = self._last_good
        if prev is not None and prev.revision == revision:
            snap = dataclasses.replace(prev, files_changed=frozenset())
        else:
            changed = None if prev is None else frozenset(
                p for p in blobs.keys() | self._blobs.keys() if blobs.get(p) != self._blobs.get(p))
            snap = Snapshot(revision=revision, path=self.path, author="",
                            subject="local directory", committed_at=datetime.now(UTC),
                            repo_url=redact(str(self.path)), files_changed=changed)
        self._blobs, self._last_good = blobs, snap
        return snap

    def snapshot_at(self, rev: str) -> Snapshot:
        """Only the current content exists: ``rev`` must be the last fetched revision."""
        if self._last_good is not None and rev == self._last_good.revision:
            return self._last_good
        raise RevisionNotFound(f"{self.path}: a plain directory has no history "
                               f"(asked for {rev[:80]!r})")

    def load(self, snapshot: Snapshot, *,
             cache: loader.ParseCache | None = loader.DEFAULT_CACHE) -> loader.Loaded:
        """The folder's YAML files as they are now (its only revision)."""
        return loader.load_repo(self.path, loader.DEFAULT_LIMITS, cache)


def _file_blob_sha(path: Path, info: os.stat_result) -> str:
    if not stat.S_ISREG(info.st_mode):
        return f"special:{stat.S_IFMT(info.st_mode)}"
    if info.st_size > MAX_BLOB_BYTES:
        return f"big:{info.st_size}:{info.st_mtime_ns}"
    digest = hashlib.sha1(f"blob {info.st_size}\0".encode(), usedforsecurity=False)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_git_repo(path: Path) -> bool:
    """Whether ``path`` is a git work tree (``.git`` in it) or a bare repository."""
    return (path / ".git").exists() or (
        (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir())


def open_source(url_or_path: str, branch: str, work_dir: Path, *, timeout: float = 60.0,
                allowed_hosts: Sequence[str] = (), allow_http: bool = False,
                keep: int = KEEP_SNAPSHOTS, work_tree: bool = False) -> GitSource | LocalSource:
    """A ``GitSource`` for URLs and local git repos, a ``LocalSource`` for other folders.

    ``work_tree=True`` reads a local folder as it is (a repo's uncommitted
    edits included) instead of its committed branch.
    """
    remote = gitcli.parse_url(url_or_path, allowed_hosts=allowed_hosts, allow_http=allow_http)

    def git_source(target: str) -> GitSource:
        return GitSource(target, branch, work_dir, timeout=timeout, allowed_hosts=allowed_hosts,
                         allow_http=allow_http, keep=keep)

    if remote.protocol != "file" or gitcli.SCHEME.match(url_or_path):
        return git_source(url_or_path)
    path = Path(remote.url)
    if not path.is_dir():
        raise SourceConfigError(f"{url_or_path[:200]!r}: not a directory")
    if work_tree or not is_git_repo(path):
        return LocalSource(path)
    return git_source(str(path))
