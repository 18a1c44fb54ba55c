"""Denied requests in the audit log, rate-limited so that a flood cannot fill the store.

Role: every refused request (401 no or bad credentials, 400 ambiguous identity
headers, 403 missing permission or foreign team, 401 bad webhook signature) is
recorded as an ``access`` (or ``webhook``) entry with result ``denied``: the
actor as claimed (``unverified:<name>`` for a 400/401, whose name nobody
vouched for; ``anonymous`` when none was claimed), the route template (never
the raw path), the reason and the client address. Never a token, a signature
or a secret: only the claimed name (bounded, credentials masked) and the
refusal's own message.

Rate limit: a token bucket per (client address, route template) of
``BURST`` rows refilled at ``RATE`` rows a second, and one bucket for all
clients together (``GLOBAL_BURST``, ``GLOBAL_RATE``), so neither one client
nor many addresses fill the store. What a client's bucket refuses is counted on
it, what only the global bucket refuses on the global one (target ``*``), and
each count is written as one summary row (``N more denied requests
suppressed``) with the next row that bucket lets through, or by ``flush`` once
it has been quiet for ``FLUSH_AFTER`` seconds (checked on denials, at most once a
second, and when the app stops). At most ``MAX_KEYS`` buckets are kept (the
oldest are summarised and dropped first). Input: the audit log and the refusal. Output: audit rows.
Callers: ``llmops.api.auth`` (401/400/403), the webhook route, and
``llmops.api.app`` (one ``DenialAudit`` per app; ``flush`` at shutdown).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llmops.engine.store import audit

BURST = 20
RATE = 0.2
GLOBAL_BURST = 200
GLOBAL_RATE = 5.0
FLUSH_AFTER = 60.0
MAX_KEYS = 10_000
MAX_CLAIMED = 64
ALL = ("*", "*")
"""The key of the global bucket's summary rows: any client, any route."""


@dataclass
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0
    action: str = audit.AuditAction.ACCESS.value
    last_reason: str = ""

    def refill(self, now: float, rate: float, burst: float) -> None:
        self.tokens = min(burst, self.tokens + (now - self.updated) * rate)
        self.updated = now


@dataclass(frozen=True, slots=True)
class Denial:
    """One refused request, as the audit trail keeps it."""

    actor: str
    route: str
    reason: str
    client: str
    status: int
    action: str = audit.AuditAction.ACCESS.value
    details: dict[str, object] = field(default_factory=dict)


def claimed(name: str) -> str:
    """The actor of a request whose identity did not verify: ``unverified:<name>``."""
    name = "".join(ch for ch in name.strip() if ch.isprintable())[:MAX_CLAIMED]
    return f"unverified:{name}" if name else "anonymous"


class DenialAudit:
    """Writes denials to an audit log through per-client-and-route token buckets."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._global = _Bucket(float(GLOBAL_BURST), clock())
        self._next_scan = 0.0

    def record(self, log: audit.AuditLog, denial: Denial) -> bool:
        """Audit ``denial`` unless its buckets are empty (then counted for a summary row);
        whether it was written. Store errors propagate (the request then fails too)."""
        key = (denial.client, denial.route)
        with self._lock:
            now = self._clock()
            entries = self._due_summaries(now, exclude=key)
            bucket = self._bucket(key, now, entries)
            bucket.refill(now, RATE, BURST)
            self._global.refill(now, GLOBAL_RATE, GLOBAL_BURST)
            allowed = bucket.tokens >= 1 and self._global.tokens >= 1
            if allowed:
                bucket.tokens -= 1
                self._global.tokens -= 1
                for held_key, held in ((key, bucket), (ALL, self._global)):
                    if held.suppressed:
                        entries.append(_summary(held_key, held))
                entries.append(_entry(denial))
            else:
                # A client over its own rate is counted on its bucket; one refused only
                # because all clients together are over theirs, on the global one (so
                # many addresses cost one summary row, not one each).
                _suppress(bucket if bucket.tokens < 1 else self._global, denial)
        if entries:
            log.extend(entries)
        return allowed

    def flush(self, log: audit.AuditLog, *, everything: bool = False) -> int:
        """Write the summary rows that are due (all of them with ``everything``)."""
        with self._lock:
            now = self._clock() + (FLUSH_AFTER if everything else 0.0)
            self._next_scan = 0.0
            entries = self._due_summaries(now)
        if entries:
            log.extend(entries)
        return len(entries)

    def _bucket(self, key: tuple[str, str], now: float,
                entries: list[audit.AuditEntry]) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            while len(self._buckets) >= MAX_KEYS:
                old_key = next(iter(self._buckets))
                old = self._buckets.pop(old_key)
                if old.suppressed:
                    entries.append(_summary(old_key, old))
            bucket = self._buckets[key] = _Bucket(float(BURST), now)
        return bucket

    def _due_summaries(self, now: float, exclude: tuple[str, str] | None = None
                       ) -> list[audit.AuditEntry]:
        """Summaries of buckets quiet for ``FLUSH_AFTER``; full, idle buckets dropped.
        The buckets are scanned at most once a second."""
        out: list[audit.AuditEntry] = []
        if now < self._next_scan:
            return out
        self._next_scan = now + 1.0
        for key in list(self._buckets):
            bucket = self._buckets[key]
            if key == exclude or now - bucket.updated < FLUSH_AFTER:
                continue
            if bucket.suppressed:
                out.append(_summary(key, bucket))
            del self._buckets[key]
        if self._global.suppressed and now - self._global.updated >= FLUSH_AFTER:
            out.append(_summary(ALL, self._global))
        return out


def _suppress(bucket: _Bucket, denial: Denial) -> None:
    bucket.suppressed += 1
    bucket.action, bucket.last_reason = denial.action, denial.reason


def _entry(denial: Denial) -> audit.AuditEntry:
    return audit.AuditEntry(
        actor=denial.actor, action=denial.action, target=denial.route,
        result=audit.AuditResult.DENIED, reason=denial.reason,
        details={**denial.details, "status": denial.status, "client": denial.client})


def _summary(key: tuple[str, str], bucket: _Bucket) -> audit.AuditEntry:
    """The row standing for ``bucket``'s suppressed denials (its count then reset)."""
    count, bucket.suppressed = bucket.suppressed, 0
    client, route = key
    return audit.AuditEntry(
        actor="llmops", action=bucket.action, target=route,
        result=audit.AuditResult.DENIED,
        reason=f"{count} more denied request{'s' if count != 1 else ''} suppressed",
        details={"suppressed": count, "client": client, "lastReason": bucket.last_reason})
