"""The audit chain anchored outside the machine: its head, now and then, in the specs repo.

Role: what the anchor file cannot do, since it lives beside the database:
hold the chain's head where someone who holds this machine (database, anchor
file and audit key) cannot rewrite it. ``RepoAnchors.write`` commits the
head, MAC'd (``seal.Keyring.sign``, an anchor as the file holds them), as the
trailers of a commit on the specs repo's ``refs/llmops/audit-anchors``
(``source.anchorref``: pushed to a remote one), at most once per interval and
only when the head moved; ``RepoAnchors.read`` reads them back, each checked
with the key it names, as an anchor source for ``store.audit.verify``.
Input: the specs repo (``writeback.Repo``), the interval, the store. Output:
the anchor written (or None), the repo's anchors. Callers: the reconciler after
every pass (``write``; a failure is logged and counted, never fails the pass,
and is retried on the next pass: the anchor file was written before), ``llmops
audit verify`` (``read``); ``service.compose.repo_anchors`` builds it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from llmops.engine.source import anchorref, writeback
from llmops.engine.store import audit, seal
from llmops.engine.store.db import Store

log = logging.getLogger(__name__)

SOURCE = f"{audit.REPO_SOURCE} ({anchorref.REF})"


class AnchorMetrics(Protocol):
    def audit_anchor(self, sink: str, ok: bool) -> None: ...


def message(anchor: seal.Anchor) -> str:
    """The commit message of ``anchor``: a subject, then the anchor as trailers."""
    return f"llmops audit anchor: entry {anchor.id}\n\n{anchor.trailers()}"


class RepoAnchors:
    """The specs repo's anchor ref, written at most once per ``interval`` seconds."""

    def __init__(self, repo: writeback.Repo, *, interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.repo = repo
        self.interval = interval
        self.clock = clock
        self._next_at = 0.0
        self._last_id = 0

    def write(self, store: Store, metrics: AnchorMetrics) -> seal.Anchor | None:
        """Commit the chain's head when the interval is over and the head moved since the
        last one; None when nothing was due or the write failed (logged, counted)."""
        sealed = store.audit_seal
        now = self.clock()
        if sealed is None or self.interval <= 0 or now < self._next_at:
            return None
        head = audit.AuditLog(store).head()
        if head is None or not head.key_id or head.id == self._last_id:
            return None
        anchor = sealed.keys.sign(head.id, head.hash)
        try:
            anchorref.append(self.repo, message(anchor))
        except anchorref.AnchorRefError as exc:
            log.warning("audit anchor of entry %d not written to %s (the anchor file has "
                        "it; retried next pass): %s", head.id, SOURCE, exc)
            metrics.audit_anchor("repo", False)
            return None
        metrics.audit_anchor("repo", True)
        self._next_at, self._last_id = now + self.interval, head.id
        return anchor

    def read(self, keys: seal.Keyring) -> audit.AnchorSource:
        """The ref's anchors, oldest first, each MAC-checked with the key it names (a
        commit that holds none, or a forged one, as a string saying so)."""
        items: list[seal.Anchor | str] = []
        for commit in anchorref.read(self.repo):
            anchor = seal.from_trailers(dict(commit.trailers))
            problem = "holds no anchor" if anchor is None else keys.check(anchor)
            if problem or anchor is None:
                items.append(f"anchor commit {commit.sha[:12]} {problem}")
            else:
                items.append(anchor)
        return SOURCE, items
