"""Commits made with git plumbing and put on a branch with compare-and-swap.

Input: a ``gitcli.Git`` opened with a private index (``gitcli.Git.open``),
the commit to build on, files as blobs, a message and the identities. Output:
tree and commit ids, and a branch moved from the commit it was expected at to
the new one, or left alone (``swap_ref`` says False) when someone moved it
meanwhile, so the caller rebuilds on the new tip. Callers:
``branches.hydrate_branch`` (rendered manifests) and ``writeback`` (one
edited spec file).

The user's work tree, index and HEAD are never touched: blobs are written
with ``hash-object --stdin`` (no attributes, so no filter), the tree is
built in the private index (``read-tree`` of the base commit's tree,
``update-index -z --index-info`` from stdin, so no path is ever an argument,
``write-tree``), the commit with ``commit-tree`` (never signed, no hooks) and
the branch moved with ``update-ref <ref> <new> <old>``: a reader sees the old
commit or the new, complete one, never a half-written tree, and a concurrent
writer makes the update fail instead of being overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmops.engine.source import gitcli


@dataclass(frozen=True, slots=True)
class Identity:
    """A commit's author or committer."""

    name: str
    email: str


def write_blob(git: gitcli.Git, data: bytes) -> str:
    """Store ``data`` as a blob; its id."""
    return git.text("hash-object", "-w", "--stdin", stdin=data).strip()


def tree_with(git: gitcli.Git, base: str | None, files: Mapping[str, tuple[str, str]]) -> str:
    """The tree of commit ``base`` (empty for None) with ``files`` ({checked path: (mode,
    blob)}) put in, built in ``git``'s private index; its id."""
    if git.index is None:
        raise ValueError("tree_with needs a Git with a private index")
    git.index.unlink(missing_ok=True)
    if base is None:
        git.run("read-tree", "--empty")
    else:
        git.run("read-tree", "--end-of-options", f"{base}^{{tree}}")
    records = "".join(f"{mode} {blob}\t{path}\0" for path, (mode, blob) in files.items())
    git.run("update-index", "-z", "--index-info", stdin=records.encode("utf-8"))
    return git.text("write-tree").strip()


def commit_tree(git: gitcli.Git, tree: str, parents: Sequence[str], message: str, *,
                author: Identity, committer: Identity) -> str:
    """A commit of ``tree`` on ``parents``; its id."""
    identity = {"GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email,
                "GIT_COMMITTER_NAME": committer.name, "GIT_COMMITTER_EMAIL": committer.email}
    linked = [arg for parent in parents for arg in ("-p", parent)]
    return git.text("commit-tree", "--no-gpg-sign", *linked, tree,
                    stdin=message.encode("utf-8"), env=identity).strip()


def commit_files(git: gitcli.Git, base: str | None, files: Mapping[str, tuple[str, str]],
                 message: str, *, author: Identity, committer: Identity) -> str:
    """``tree_with`` then ``commit_tree`` on ``base`` (a root commit for None)."""
    tree = tree_with(git, base, files)
    return commit_tree(git, tree, [base] if base is not None else [], message,
                       author=author, committer=committer)


def swap_ref(git: gitcli.Git, ref: str, new: str, old: str | None, reason: str) -> bool:
    """Move ``ref`` to ``new`` if it is still at ``old`` (None: if it does not exist).

    False when the update failed: the ref moved (or appeared) meanwhile.
    """
    expected = old if old is not None else "0" * len(new)
    try:
        git.run("update-ref", "-m", reason, ref, new, expected)
    except gitcli.GitFailed:
        return False
    return True
