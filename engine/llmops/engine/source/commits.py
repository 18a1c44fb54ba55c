"""The source stage for plans: one commit of a local git repo -> a directory to load.

Input: a path inside a git work tree (the specs repo, or a folder of a larger
repo) and a revision the user typed. Output: a ``Snapshot`` holding the
resolved commit SHA and a temporary directory with that commit's YAML files
as they are stored in git, for ``llmops.engine.spec.validate.load_and_validate``.
Called by the ``llmops plan`` command; the reconciler's source stage reads
remote repos itself.

Nothing here touches the user's work tree, index or refs. The tree is read
with ``git ls-tree`` and ``git cat-file --batch`` (not ``git archive``, whose
``export-ignore``/``export-subst`` attributes would change what is read), so
the files are exactly the committed blobs. git runs with hooks and fsmonitor
off and no terminal prompts; a revision is never passed where git could read
it as an option: it may not start with ``-``, and it is resolved with
``rev-parse --verify --end-of-options REV^{commit}`` before anything uses it.
Only YAML files outside dot-folders are written (the loader reads nothing
else); a blob over the loader's file cap is written as a sparse file of its
size, so the loader reports it exactly as it would in a checkout, and a
symbolic link becomes a link, which the loader refuses.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from llmops.engine.errors import LlmopsError
from llmops.engine.spec import loader

GIT_OPTIONS = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
               "--literal-pathspecs", "--no-pager")
MAX_REV_LENGTH = 256
_MODE_FILE = ("100644", "100755")
_MODE_LINK = "120000"


class GitError(LlmopsError):
    """A git command failed, or a revision or path cannot be read."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The files of ``commit`` (a full SHA) under the specs folder, written to ``root``."""

    commit: str
    root: Path


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        done = subprocess.run(["git", *GIT_OPTIONS, *args], cwd=repo, input=stdin,
                              capture_output=True, env=env, check=False, timeout=300)
    except FileNotFoundError as exc:
        raise GitError("git is not installed (needed to read commits)") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out in {repo}") from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed in {repo}: "
                       f"{message[-1] if message else f'exit {done.returncode}'}")
    return done.stdout


def locate(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """The work tree holding ``path`` and ``path`` relative to it ("" at its top)."""
    folder = Path(path).resolve()
    if not folder.is_dir():
        raise GitError(f"{path}: is not a directory")
    try:
        top = Path(_git(folder, "rev-parse", "--show-toplevel").decode().strip()).resolve()
    except GitError as exc:
        raise GitError(f"{path}: is not inside a git work tree ({exc})") from None
    rel = folder.relative_to(top).as_posix()
    return top, "" if rel == "." else rel


def check_rev(rev: str) -> str:
    """Refuse what git could mistake for an option or that is no revision at all."""
    if not rev or rev.startswith("-") or len(rev) > MAX_REV_LENGTH or any(
        c in rev for c in "\0\n\r"
    ):
        raise GitError(f"{rev[:60]!r} is not a valid revision")
    return rev


def resolve(repo: Path, rev: str) -> str:
    """The full SHA of the commit ``rev`` names in ``repo``."""
    check_rev(rev)
    try:
        out = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options",
                   f"{rev}^{{commit}}")
    except GitError:
        out = b""
    sha = out.decode().strip()
    if len(sha) not in (40, 64) or not all(c in "0123456789abcdef" for c in sha):
        raise GitError(f"revision {rev!r} does not name a commit in {repo}")
    return sha


def head_commit(path: str | os.PathLike[str]) -> str:
    """The SHA of HEAD of the work tree holding ``path``; "" outside git or before a commit."""
    try:
        top, _ = locate(path)
        return resolve(top, "HEAD")
    except GitError:
        return ""


def _safe_rel(raw: bytes) -> PurePosixPath | None:
    text = raw.decode("utf-8", "surrogateescape")
    parts = text.split("/")
    if any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise GitError(f"commit tree holds an unsafe path {text[:200]!r}")
    if any(p.startswith(".") for p in parts) or not text.endswith(loader.YAML_SUFFIXES):
        return None
    return PurePosixPath(text)


def _list_tree(repo: Path, treeish: str) -> list[tuple[str, str, int, PurePosixPath]]:
    """(mode, blob SHA, size, path) of every YAML blob or link under ``treeish``."""
    out = _git(repo, "ls-tree", "-r", "-z", "--long", "--end-of-options", treeish)
    entries: list[tuple[str, str, int, PurePosixPath]] = []
    for record in out.split(b"\0"):
        if not record:
            continue
        head, _, raw_path = record.partition(b"\t")
        fields = head.decode().split()
        if len(fields) != 4 or fields[1] != "blob":
            continue  # submodules (commits) and anything unexpected
        mode, sha, size = fields[0], fields[2], fields[3]
        rel = _safe_rel(raw_path)
        if rel is not None and (mode in _MODE_FILE or mode == _MODE_LINK):
            entries.append((mode, sha, int(size) if size.isdigit() else 0, rel))
    return entries


def _read_blobs(repo: Path, shas: list[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    out = _git(repo, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in shas).encode())
    blobs: dict[str, bytes] = {}
    pos = 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        header = out[pos:end].decode().split()
        if len(header) != 3:
            raise GitError(f"unexpected git cat-file output: {out[pos:end][:80]!r}")
        size = int(header[2])
        blobs[header[0]] = out[end + 1:end + 1 + size]
        pos = end + 1 + size + 1
    return blobs


def export(repo: Path, commit: str, prefix: str, dest: Path,
           limits: loader.Limits = loader.DEFAULT_LIMITS) -> Path:
    """Write the YAML files of ``commit`` under ``prefix`` into ``dest``; return ``dest``."""
    treeish = f"{commit}:{prefix}" if prefix else f"{commit}^{{tree}}"
    try:
        entries = _list_tree(repo, treeish)
    except GitError as exc:
        raise GitError(f"{prefix or '.'} does not exist at commit {commit[:12]} ({exc})") from None
    if len(entries) > limits.max_files:
        raise GitError(f"commit {commit[:12]} holds more than {limits.max_files} YAML files")
    small = [sha for mode, sha, size, _ in entries
             if mode == _MODE_LINK or size <= limits.max_file_bytes]
    blobs = _read_blobs(repo, sorted(set(small)))
    root = dest.resolve()
    for mode, sha, size, rel in entries:
        target = root.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == _MODE_LINK:
            os.symlink(blobs[sha].decode("utf-8", "surrogateescape"), target)
        elif sha in blobs:
            target.write_bytes(blobs[sha])
        else:
            with open(target, "wb") as fh:  # over the cap: same size, no content
                fh.truncate(size)
    return root


@contextmanager
def snapshot(path: str | os.PathLike[str], rev: str,
             limits: loader.Limits = loader.DEFAULT_LIMITS) -> Iterator[Snapshot]:
    """The specs folder ``path`` as of commit ``rev``, in a temporary directory."""
    top, prefix = locate(path)
    commit = resolve(top, rev)
    with tempfile.TemporaryDirectory(prefix=f"llmops-{commit[:12]}-") as tmp:
        yield Snapshot(commit, export(top, commit, prefix, Path(tmp), limits))
