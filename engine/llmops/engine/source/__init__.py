"""Stage 1, source, and everything else that touches git.

Takes: a repo URL or path, a branch or revision. Returns: a ``Snapshot`` (a
resolved commit SHA and a private read-only directory of its files) for the
spec stage; for writes, a ``WriteResult`` naming the commit made.

- ``gitcli``: the one way llmops runs git (``Git``: an environment built from
  scratch, hardening flags, time-outs that kill the process group, redacted
  errors; validated URLs, branches and revisions). Nothing else starts git.
- ``gitobjects``: reading objects: the one commit parser (``Commit``), tree
  listings, blobs, and the one way a tree becomes files (``export``).
- ``gitcommit``: the one way a commit is made: a private index,
  ``commit-tree`` and a compare-and-swap ``update-ref``.
- ``snapshots``: the reconciler's source: a followed branch (``GitSource``) or
  a plain folder (``LocalSource``); unknown is never empty.
- ``commits``: one commit of a local work tree as a directory (``llmops plan``).
- ``branches``: rendered manifests committed to a branch in Argo CD's Source
  Hydrator layout (``llmops hydrate`` and the hydrate-branch actuator).
- ``writeback``: an edit of one spec file as one commit (the API's writes);
  ``push``: the private mirror that carries such commits to a remote;
  ``specedits``: the field edits; ``rollback``: a spec file as the environment
  applied it before (what a rollback restores).
- ``scaffold``: a new specs repo from the bundled template (``llmops init``).

Called by the reconciler, the use cases in ``llmops.engine.service`` and the
CLI. Imports the spec stage (for its file rules) and nothing above it.
"""
