"""Reading git objects: a commit as one typed value, a tree's entries, blobs, and a tree
written into a directory.

Input: a ``gitcli.Git`` and revisions already resolved or checked. Output:
``Commit`` (the one parse of a commit object: SHA, author, dates, subject,
body, trailers), ``TreeEntry`` lists, blob bytes, and files on disk
(``export``). Failures of git raise ``gitcli.GitFailed`` (callers add their
own context); a tree llmops will not write raises ``UnsafeTree``. Callers:
``snapshots`` (the reconciler's snapshots), ``commits`` (``llmops plan``),
``branches`` (the dry commit, the hydrated branch), ``writeback`` (the edited
tree it validates) and ``llmops.engine.actuate.branch``.

Writing a tree (``list_tree`` then ``export``) is the one way llmops turns a
commit into files: ``ls-tree`` and ``cat-file --batch``, never ``checkout``
or ``archive``, so no filter, ``export-subst`` or hook runs and the files are
exactly the committed blobs. Paths with an empty, ``.`` or ``..`` segment,
a ``.git`` segment (any case) or a backslash, and paths listed twice or as
both a file and a folder, are refused by ``list_tree`` (so also by readers
that keep the blobs in memory, ``snapshots`` and ``commits``); every file is created
exclusively and never through a link; a blob over the size cap becomes a
sparse file of its size (its content is never read), so the loader reports it
as it would in a checkout; symbolic links are created as links after every
file and never resolved; submodule entries are skipped. Commit headers are
parsed with GitPython's ``parse_actor_and_date`` (pure parsing, no command).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from git.objects.util import parse_actor_and_date

from llmops.engine.errors import LlmopsError
from llmops.engine.source import gitcli
from llmops.engine.spec import loader

MAX_TREE_ENTRIES = 200_000
LINK = "120000"
REGULAR = "100644"
EXECUTABLE = "100755"
EPOCH = datetime.fromtimestamp(0, UTC)
_BATCH_BYTES = 32 * 1024 * 1024
_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):\s?(.*)$")


class UnsafeTree(LlmopsError):
    """A tree llmops will not write: an unsafe or conflicting path, or too many entries."""


# ------------------------------------------------------------------ commits


@dataclass(frozen=True, slots=True)
class Commit:
    """One commit object, parsed."""

    sha: str
    author_name: str
    author_email: str
    authored_at: datetime
    committed_at: datetime
    subject: str
    """The first paragraph of the message on one line (git's ``%s``)."""
    body: str
    """The message after the first paragraph (git's ``%b``), stripped."""
    message: str
    """The whole message as stored."""
    trailers: tuple[tuple[str, str], ...]
    """``Key: value`` lines of the message's last paragraph, in order."""

    @property
    def author(self) -> str:
        """``Name <email>`` (``""`` when the commit names no author)."""
        if not (self.author_name or self.author_email):
            return ""
        return f"{self.author_name} <{self.author_email}>"


def _moment(epoch: int, west: int) -> datetime:
    try:
        return datetime.fromtimestamp(epoch, timezone(timedelta(seconds=-west)))
    except (ValueError, OverflowError, OSError):
        return EPOCH


def _trailers(message: str) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    for line in message.strip().split("\n\n")[-1].splitlines():
        m = _TRAILER.match(line.strip())
        if m:
            found.append((m.group(1), m.group(2).strip()))
    return tuple(found)


def parse_commit(sha: str, raw: bytes) -> Commit:
    """The ``Commit`` of a raw commit object (``git cat-file commit`` output)."""
    head, _, message = raw.decode("utf-8", "replace").partition("\n\n")
    name, email, authored, committed = "", "", EPOCH, EPOCH
    for line in head.split("\n"):
        key = line.partition(" ")[0]
        if key == "author":
            actor, epoch, west = parse_actor_and_date(line)
            name, email, authored = actor.name or "", actor.email or "", _moment(epoch, west)
        elif key == "committer":
            _, epoch, west = parse_actor_and_date(line)
            committed = _moment(epoch, west)
    first, _, rest = message.strip().partition("\n\n")
    return Commit(sha=sha, author_name=name, author_email=email, authored_at=authored,
                  committed_at=committed, subject=" ".join(first.split()), body=rest.strip(),
                  message=message, trailers=_trailers(message))


def read_commit(git: gitcli.Git, sha: str) -> Commit:
    """The commit ``sha`` (a full SHA) of ``git``'s repository."""
    return parse_commit(sha, git.run("cat-file", "commit", sha))


# ------------------------------------------------------------------ trees and blobs


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """A blob of a tree: its mode, id, size and path segments."""

    mode: str
    blob: str
    size: int
    parts: tuple[str, ...]

    @property
    def path(self) -> str:
        return "/".join(self.parts)

    @property
    def is_link(self) -> bool:
        return self.mode == LINK


def _entries(listing: bytes) -> Iterator[tuple[list[str], bytes]]:
    """(mode, type, id, size) and raw path of each record of ``ls-tree -z --long``."""
    for record in listing.split(b"\0"):
        if record:
            head, _, raw_path = record.partition(b"\t")
            yield head.decode("ascii", "replace").split(), raw_path


def _safe_parts(raw: bytes, label: str) -> tuple[str, ...]:
    text = os.fsdecode(raw)
    parts = tuple(text.split("/"))
    if any(p in ("", ".", "..") or p.lower() == ".git" or "\\" in p for p in parts):
        raise UnsafeTree(f"{label} holds an unsafe path {text[:200]!r}")
    return parts


def is_yaml(parts: tuple[str, ...]) -> bool:
    """Whether the loader reads the file at ``parts``: YAML, outside dot-folders."""
    return not any(p.startswith(".") for p in parts) and parts[-1].endswith(loader.YAML_SUFFIXES)


def list_tree(git: gitcli.Git, treeish: str, *, label: str, yaml_only: bool = False,
              max_entries: int = MAX_TREE_ENTRIES) -> list[TreeEntry]:
    """Every blob and link under ``treeish`` (only YAML files outside dot-folders with
    ``yaml_only``); ``UnsafeTree`` names ``label`` (e.g. ``commit abc123``) when a path
    is unsafe or conflicting, or there are more than ``max_entries``."""
    listing = git.run("ls-tree", "-r", "-z", "--long", "--end-of-options", treeish)
    found: list[TreeEntry] = []
    seen: dict[tuple[str, ...], bool] = {}
    for fields, raw_path in _entries(listing):
        if len(fields) != 4 or fields[1] != "blob":
            continue  # submodule gitlinks: nothing is cloned
        parts = _safe_parts(raw_path, label)
        _claim(parts, seen, label)
        if yaml_only and not is_yaml(parts):
            continue
        found.append(TreeEntry(fields[0], fields[2],
                               int(fields[3]) if fields[3].isdigit() else 0, parts))
        if len(found) > max_entries:
            noun = "YAML files" if yaml_only else "files"
            raise UnsafeTree(f"{label} holds more than {max_entries} {noun}")
    return found


def _claim(parts: tuple[str, ...], seen: dict[tuple[str, ...], bool], label: str) -> None:
    """Record ``parts`` as a file (True) and its parents as folders (False) in ``seen``;
    ``UnsafeTree`` when a path is listed twice or is both a file and a folder (trees git
    never writes, which a write would refuse too: nothing is read from such a tree)."""
    for depth in range(1, len(parts)):
        if seen.setdefault(parts[:depth], False):
            raise UnsafeTree(f"{label} holds conflicting paths at {'/'.join(parts)[:200]!r}")
    if parts in seen:
        raise UnsafeTree(f"{label} holds conflicting paths at {'/'.join(parts)[:200]!r}")
    seen[parts] = True


def entry_at(git: gitcli.Git, commit: str, path: str) -> TreeEntry | None:
    """The blob at ``path`` (a checked relative path) in ``commit``; None when absent."""
    listing = git.run("ls-tree", "--full-tree", "-z", "--long", "--end-of-options", commit,
                      "--", path)
    for fields, raw_path in _entries(listing):
        if os.fsdecode(raw_path) == path and len(fields) == 4 and fields[1] == "blob":
            size = int(fields[3]) if fields[3].isdigit() else 0
            return TreeEntry(fields[0], fields[2], size, tuple(path.split("/")))
    return None


def read_blob(git: gitcli.Git, blob: str) -> bytes:
    return git.run("cat-file", "blob", blob)


def loadable_in_memory(yaml: Sequence[TreeEntry], limits: loader.Limits) -> bool:
    """Whether the loader can read the YAML files ``yaml`` from memory and say what it says
    of a checkout: no link (its message depends on where the link points on disk) and
    nothing over a size cap (the loader's walk reports those)."""
    return (not any(e.is_link or e.size > limits.max_file_bytes for e in yaml)
            and sum(e.size for e in yaml) <= limits.max_repo_bytes)


def read_missing(git: gitcli.Git, entries: Sequence[TreeEntry], store: dict[str, bytes],
                 label: str) -> None:
    """Add to ``store`` (blob SHA -> content) the blobs of ``entries`` it lacks, through
    one ``cat-file --batch``."""
    missing = list(dict.fromkeys(e.blob for e in entries if e.blob not in store))
    store.update(zip(missing, read_blobs(git, missing, label), strict=True))


def read_blobs(git: gitcli.Git, blobs: Sequence[str], label: str, *,
               kind: str = "blob") -> list[bytes]:
    """The content of each blob (or object of another ``kind``: ``commit``), in order,
    through one ``cat-file --batch``."""
    if not blobs:
        return []
    out = git.run("cat-file", "--batch", stdin="".join(f"{b}\n" for b in blobs).encode())
    result: list[bytes] = []
    pos = 0
    for _ in blobs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if len(header) != 3 or header[1] != kind.encode():
            raise UnsafeTree(f"{label}: unexpected object {out[pos:end][:80]!r}")
        size = int(header[2])
        result.append(out[end + 1:end + 1 + size])
        pos = end + 1 + size + 1
    return result


# ------------------------------------------------------------------ a tree on disk


def export(git: gitcli.Git, entries: Sequence[TreeEntry], dest: Path, *, label: str,
           max_blob_bytes: int, read_only: bool = False) -> None:
    """Write ``entries`` under ``dest`` (an existing empty directory the caller owns).

    Blobs over ``max_blob_bytes`` become sparse files of their size; with
    ``read_only`` files are 0444 and directories below ``dest`` 0555.
    """
    files = [e for e in entries if not e.is_link]
    links = [e for e in entries if e.is_link]
    mode = 0o444 if read_only else 0o666
    for entry in files:  # over the cap: same size, content never read
        if entry.size > max_blob_bytes:
            with _exclusive(_place(dest, entry, label), mode, label) as fd:
                os.ftruncate(fd, entry.size)
    for batch in _batches([e for e in files if e.size <= max_blob_bytes]):
        for entry, data in zip(batch, read_blobs(git, [e.blob for e in batch], label),
                               strict=True):
            with _exclusive(_place(dest, entry, label), mode, label) as fd:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
    targets = read_blobs(git, [e.blob for e in links], label)
    paths = [_place(dest, entry, label) for entry in links]  # every parent before any link
    for path, target in zip(paths, targets, strict=True):
        try:
            os.symlink(target, path)  # never resolved: the target is not read
        except (OSError, ValueError):
            raise UnsafeTree(f"{label} holds a conflicting or invalid link at "
                             f"{path.relative_to(dest)}") from None
    if read_only:
        chmod_dirs(dest, 0o555)


def _place(root: Path, entry: TreeEntry, label: str) -> Path:
    target = root.joinpath(*entry.parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise UnsafeTree(f"{label} holds conflicting paths at {entry.path[:200]!r}") from None
    return target


@contextlib.contextmanager
def _exclusive(path: Path, mode: int, label: str) -> Iterator[int]:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError:
        raise UnsafeTree(f"{label} holds a conflicting path at {path.name!r}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _batches(entries: list[TreeEntry]) -> Iterator[list[TreeEntry]]:
    batch: list[TreeEntry] = []
    total = 0
    for entry in entries:
        if batch and total + entry.size > _BATCH_BYTES:
            yield batch
            batch, total = [], 0
        batch.append(entry)
        total += entry.size
    if batch:
        yield batch


def chmod_dirs(root: Path, mode: int) -> None:
    """``mode`` on every directory below ``root`` (links are never followed)."""
    for dirpath, dirnames, _ in os.walk(root, topdown=False):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.chmod(full, mode)
