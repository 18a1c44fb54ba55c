"""The audit log: append-only, hash-chained entries, their queries and their verification.

Role: record who did what to which object or spec, at which commit, with
which result, such that a changed, removed or inserted row is detectable.
Input: ``AuditEntry`` values (already meaningful text; this module redacts
credentials again before anything is hashed or stored). Output:
``AuditRecord`` rows with ``id``, ``at``, ``prev_hash`` and ``hash``;
``AuditPage`` for queries; ``VerifyResult`` for ``verify``. Callers: the
reconciler's record stage (an ``intent`` entry before it acts, the outcome
after), the API (access decisions and its few writes), and
``llmops audit verify``.

The chain: ``hash = HMAC-SHA256(key, prev_hash || canonical_encoding(row))``
with the store's audit key (``store.seal``: never in the database; each row
holds only its ``key_id``), or ``sha256(prev_hash || ...)`` for a store with no
key (and rows written before keys existed, accepted only before the first keyed
row). The row's fields (id included) are encoded by ``canonical_encoding``
alone: JSON with sorted keys, no whitespace, the timestamp as an ISO-8601 UTC
string with microseconds. The first entry has id 1 and ``prev_hash`` = 64
zeros. Ids are assigned by the appender (last id + 1) under a lock, so they are
gap-free and a missing row shows as a gap. Appends are serialised per
database: ``pg_advisory_xact_lock`` inside the appending transaction on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite. The database refuses UPDATE and
DELETE with triggers (see the migration). Anchors: every ``anchor_every``
entries, and after every reconcile pass, the head (id, hash, time) is appended,
MAC'd, to the anchor file outside the database (and, now and then, committed to
the specs repo by ``run.anchoring``); ``verify`` checks, per source, each
anchored entry is there and unchanged, so a truncated or rewritten chain is
caught even by someone who can write every row. Each keyed row is verified with
the key its ``key_id`` names (``seal.Keyring``: the current key and retired
ones); a row whose key is not there is ``unverifiable``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Select, bindparam, insert, select, text

from llmops.engine import redact
from llmops.engine.store import db, models, seal
from llmops.engine.store.models import AuditRow

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
MAX_PAGE = 1000
_TOKEN = re.compile(r"^[a-z][a-z0-9_.:-]{0,62}$")
_LIMITS = {"actor": 255, "source_commit": 64, "environment": 63}
FILE_SOURCE = "the anchor file"
REPO_SOURCE = "the specs repo"
AnchorSource = tuple[str, Sequence[seal.Anchor | str]]
"""Where anchors come from (named in ``verify``'s messages), and what it holds:
MAC-checked anchors, or strings saying what is wrong."""


class AuditAction(StrEnum):
    """The usual actions; any lowercase token of up to 63 characters is accepted."""

    APPLY = "apply"
    PRUNE = "prune"
    RECONCILE = "reconcile"
    ROLLBACK = "rollback"
    ACCESS = "access"
    WRITE = "write"


class AuditResult(StrEnum):
    INTENT = "intent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"
    """A pass whose process died between its intent and its outcome (written by the next)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What a caller records; the log adds id, time and hashes."""

    actor: str
    action: str
    target: str
    result: str
    environment: str = ""
    source_commit: str = ""
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored entry of the chain."""

    id: int
    at: datetime
    actor: str
    source_commit: str
    environment: str
    action: str
    target: str
    result: str
    reason: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = format_timestamp(self.at)
        return out


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Entries newest first; pass ``next_after_id`` as ``after_id`` for the next page."""

    entries: tuple[AuditRecord, ...]
    next_after_id: int | None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of walking the chain: intact, or the first broken entry and why."""

    entries: int
    broken_id: int | None = None
    reason: str = ""
    head_hash: str = GENESIS_HASH
    checked: tuple[tuple[str, int], ...] = ()
    """Per anchor source (``FILE_SOURCE``, ``REPO_SOURCE``), the anchors checked in it
    (each one's entry present and unchanged)."""
    unverifiable: bool = False
    """The walk stopped at an entry keyed with a key the keyring does not hold."""

    @property
    def ok(self) -> bool:
        return self.broken_id is None

    @property
    def anchors(self) -> int:
        return sum(count for _source, count in self.checked)

    def __str__(self) -> str:
        if self.broken_id == 0:
            return f"audit anchors broken: {self.reason}"
        if self.unverifiable:
            return f"audit chain unverifiable at entry {self.broken_id}: {self.reason}"
        if self.ok:
            anchored = ", ".join(f"{count} in {source}" for source, count in self.checked)
            return (f"audit chain intact: {self.entries} entries"
                    + (f"; anchors checked: {anchored}" if anchored else ""))
        return f"audit chain broken at entry {self.broken_id}: {self.reason}"


# --------------------------------------------------------------------------- encoding


def format_timestamp(at: datetime) -> str:
    """ISO-8601 in UTC with exactly six fractional digits, e.g. 2025-01-02T03:04:05.000006Z."""
    if at.tzinfo is None:
        raise ValueError(f"naive timestamp {at.isoformat()}")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_encoding(record: AuditRecord) -> bytes:
    """The bytes an entry's hash covers: every field but the two hashes, canonical JSON
    (``key_id`` only when set, so unkeyed entries keep their original encoding)."""
    fields: dict[str, Any] = {
        "id": record.id,
        "at": format_timestamp(record.at),
        "actor": record.actor,
        "source_commit": record.source_commit,
        "environment": record.environment,
        "action": record.action,
        "target": record.target,
        "result": record.result,
        "reason": record.reason,
        "details": record.details,
    }
    if record.key_id:
        fields["key_id"] = record.key_id
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: str, record: AuditRecord, key: seal.AuditKey | None = None) -> str:
    """``HMAC-SHA256(key, prev_hash || canonical_encoding(record))`` for a keyed entry
    (``record.key_id`` set, which must name ``key``), else ``sha256(...)``; 64 hex digits."""
    data = prev_hash.encode("ascii") + canonical_encoding(record)
    if not record.key_id:
        return hashlib.sha256(data).hexdigest()
    if key is None:
        raise seal.AuditKeyError(f"no audit key: entry {record.id} is keyed (key id "
                                 f"{record.key_id}); set LLMOPS_AUDIT__KEY or put the key "
                                 "file in $LLMOPS_HOME/audit-key")
    return key.mac(data)


def _clean_text(value: str, limit: int | None = None) -> str:
    """Redacted, storable on every backend (no NUL, valid UTF-8), within ``limit`` characters."""
    out = redact.redact(value).replace("\x00", "\ufffd")
    out = out.encode("utf-8", "replace").decode("utf-8")
    if limit is not None and len(out) > limit:
        out = out[: limit - 1] + "\u2026"
    return out


def _clean_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Redacted plain JSON data, exactly as it will read back from either database."""
    try:
        encoded = orjson.dumps(redact.redact_data(details), option=orjson.OPT_SORT_KEYS)
    except TypeError as err:
        raise ValueError(f"audit details are not JSON data: {err}") from err
    value = orjson.loads(encoded.replace(b"\\u0000", b"\\ufffd"))
    if not isinstance(value, dict):
        raise ValueError("audit details must be a mapping")
    return value


def _token(name: str, value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"audit {name} {value!r} is not a lowercase token (e.g. 'apply')")
    return value


def _record(row: Any) -> AuditRecord:
    return AuditRecord(id=row.id, at=row.at, actor=row.actor, source_commit=row.source_commit,
                       environment=row.environment, action=row.action, target=row.target,
                       result=row.result, reason=row.reason, details=dict(row.details),
                       prev_hash=row.prev_hash, hash=row.hash, key_id=row.key_id)


_COLUMNS = (AuditRow.id, AuditRow.at, AuditRow.actor, AuditRow.source_commit,
            AuditRow.environment, AuditRow.action, AuditRow.target, AuditRow.result,
            AuditRow.reason, AuditRow.details, AuditRow.prev_hash, AuditRow.hash,
            AuditRow.key_id)


_FILTERS = ("actor", "action", "result", "environment")


@functools.lru_cache(maxsize=128)
def _page_statement(filters: tuple[str, ...], after: bool, since: bool, until: bool,
                    end: bool) -> Select[Any]:
    """``AuditLog.query``'s page for one shape of filter, built once (bound parameters
    named after its arguments; ``first`` and ``end``: the ids ``since`` and ``until``
    start at)."""
    stmt: Select[Any] = select(*_COLUMNS)
    for name in filters:
        stmt = stmt.where(getattr(AuditRow, name) == bindparam(name))
    if after:
        stmt = stmt.where(AuditRow.id < bindparam("after_id"))
    if since:
        stmt = stmt.where(AuditRow.at >= bindparam("since"), AuditRow.id >= bindparam("first"))
    if until:
        stmt = stmt.where(AuditRow.at < bindparam("until"))
    if end:
        stmt = stmt.where(AuditRow.id < bindparam("end"))
    return stmt.order_by(AuditRow.id.desc()).limit(bindparam("limit"))


def _first_id_from(at: datetime) -> Select[int]:
    """The id of the first entry at or after ``at`` (through the ``at`` index)."""
    return (select(AuditRow.id).where(AuditRow.at >= at)
            .order_by(AuditRow.at, AuditRow.id).limit(1))


def _draft(entry: AuditEntry) -> AuditRecord:
    """``entry`` checked and cleaned, not yet linked (no id, time or hashes)."""
    if not entry.actor.strip():
        raise ValueError("audit entry needs an actor")
    return AuditRecord(
        id=0, at=datetime.min.replace(tzinfo=UTC),
        actor=_clean_text(entry.actor, _LIMITS["actor"]),
        source_commit=_clean_text(entry.source_commit, _LIMITS["source_commit"]),
        environment=_clean_text(entry.environment, _LIMITS["environment"]),
        action=_token("action", str(entry.action)),
        target=_clean_text(entry.target),
        result=_token("result", str(entry.result)),
        reason=_clean_text(entry.reason),
        details=_clean_details(entry.details),
        prev_hash=GENESIS_HASH, hash="")


# --------------------------------------------------------------------------- the log


class AuditLog:
    """Append to, read and verify the audit chain of one store."""

    def __init__(self, store: db.Store, *, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    def append(self, entry: AuditEntry) -> AuditRecord:
        """Store ``entry`` as the next link of the chain, in its own short transaction.

        Raises ``StoreUnavailable`` when the store cannot be written (then
        the caller must not act), ``ValueError`` for a malformed entry.
        """
        return self.extend([entry])[0]

    def extend(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Store ``entries`` as the next links of the chain, in order, in one transaction
        (all or none); a pass's per-object entries cost one round of the store."""
        drafts = [_draft(entry) for entry in entries]
        if not drafts:
            return []
        sealed = self.store.audit_seal
        key = sealed.key if sealed is not None else None
        if key is not None:
            drafts = [replace(d, key_id=key.key_id) for d in drafts]
        with self.store.session(write=True) as session:
            if self.store.dialect == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                {"key": db.AUDIT_LOCK_KEY})
            last = session.execute(
                select(AuditRow.id, AuditRow.at, AuditRow.hash)
                .order_by(AuditRow.id.desc()).limit(1)).first()
            now = self._clock().astimezone(UTC)
            # Never earlier than the previous entry, so time order is id order.
            next_id, at, prev = ((1, now, GENESIS_HASH) if last is None
                                 else (last.id + 1, max(now, last.at), last.hash))
            records = []
            for offset, draft in enumerate(drafts):
                record = replace(draft, id=next_id + offset, at=at, prev_hash=prev)
                record = replace(record, hash=chain_hash(prev, record, key))
                records.append(record)
                prev = record.hash
            session.execute(insert(AuditRow), [
                {f: getattr(record, f) for f in AuditRecord.__slots__} for record in records])
        self._anchor(records[-1], force=False)
        return records

    def anchor(self) -> seal.Anchor | None:
        """Write the chain's head to the anchor file when it moved since the last anchor
        (the reconciler calls this after every pass); None when nothing was written."""
        head = self.head()
        return self._anchor(head, force=True) if head is not None else None

    def _anchor(self, head: AuditRecord, *, force: bool) -> seal.Anchor | None:
        sealed = self.store.audit_seal
        if sealed is None or sealed.anchors is None or not head.key_id:
            return None
        try:
            if not sealed.anchors.due(head.id, force=force):
                return None
            return sealed.anchors.write(head.id, head.hash)
        except OSError as err:  # the entries are committed; the next append tries again
            log.warning("audit anchor not written to %s: %s", sealed.anchors.path,
                        err.strerror or err)
            return None

    def get(self, entry_id: int) -> AuditRecord | None:
        with self.store.connection() as conn:
            row = conn.execute(select(*_COLUMNS).where(AuditRow.id == entry_id)).first()
        return _record(row) if row is not None else None

    def head(self) -> AuditRecord | None:
        """The newest entry (its hash seals everything before it)."""
        with self.store.connection() as conn:
            row = conn.execute(select(*_COLUMNS).order_by(AuditRow.id.desc()).limit(1)).first()
        return _record(row) if row is not None else None

    def query(self, *, actor: str | None = None, action: str | None = None,
              result: str | None = None, environment: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              after_id: int | None = None, limit: int = 100) -> AuditPage:
        """Entries matching every given filter, newest first.

        ``since`` is inclusive and ``until`` exclusive; ``after_id`` continues
        a listing after (that is, below) that id. ``limit`` is capped at 1000.
        Each filter has an index ending in ``id``; a time range is first turned
        into an id range through the ``at`` index (``append`` keeps ``at``
        non-decreasing along the ids), so every query walks one index backwards
        and stops after ``limit`` rows, also with a million entries.
        """
        limit = max(1, min(limit, MAX_PAGE))
        params: dict[str, Any] = {"actor": actor, "action": action, "result": result,
                                  "environment": environment, "after_id": after_id,
                                  "since": since, "until": until, "limit": limit}
        with self.store.connection() as conn:
            if since is not None:
                params["first"] = conn.execute(_first_id_from(since)).scalar()
                if params["first"] is None:
                    return AuditPage((), None)
            if until is not None:
                params["end"] = conn.execute(_first_id_from(until)).scalar()
            stmt = _page_statement(
                tuple(name for name in _FILTERS if params[name] is not None),
                after_id is not None, since is not None, until is not None,
                params.get("end") is not None)
            entries = tuple(_record(row) for row in conn.execute(stmt, params).all())
        next_after = entries[-1].id if len(entries) == limit else None
        return AuditPage(entries, next_after)

    def verify(self, *, batch_size: int = 1000) -> VerifyResult:
        return verify(self.store, batch_size=batch_size)


def verify(store: db.Store, *, batch_size: int = 1000, sealed: seal.Seal | None = None,
           elsewhere: Sequence[AnchorSource] = ()) -> VerifyResult:
    """Walk the chain in id order, ``batch_size`` rows per read, in constant memory.

    Checks every entry up to the newest one present when the walk starts and
    returns the first broken one: a ``gap`` (an id missing before it), a
    ``prev_hash mismatch`` (it does not follow its predecessor), a ``hash
    mismatch`` (its fields are not the ones hashed, or not under the key its
    ``key_id`` names), an ``unkeyed`` entry after keyed ones (recomputed without
    the key), one keyed with a key the keyring lacks (``unverifiable``), or one
    that differs from an anchor; then that no anchored entry is missing
    (truncation). ``sealed`` (default: the store's) gives the keys and the anchor
    file; ``elsewhere`` more anchors (the specs repo's), each source checked on
    its own so the message names it. A keyed entry with no seal at all raises
    ``seal.AuditKeyError``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    sealed = sealed if sealed is not None else store.audit_seal
    sources = [(FILE_SOURCE, sealed.anchors.read())] \
        if sealed is not None and sealed.anchors is not None else []
    anchors: list[tuple[str, dict[int, seal.Anchor]]] = []
    for source, items in [*sources, *elsewhere]:
        by_id, bad_anchor = _anchors(items)
        if bad_anchor:
            return VerifyResult(0, 0, f"{bad_anchor} (in {source})")
        anchors.append((source, by_id))
    with store.connection() as conn:
        last_id = conn.execute(select(models.AuditRow.id)
                               .order_by(models.AuditRow.id.desc()).limit(1)).scalar()
    walk = _Walk(sealed.keys if sealed is not None else None, anchors)
    while last_id is not None and walk.expected_id <= last_id:
        with store.connection() as conn:
            rows = conn.execute(
                select(*_COLUMNS)
                .where(AuditRow.id >= walk.expected_id, AuditRow.id <= last_id)
                .order_by(AuditRow.id).limit(batch_size)).all()
        if not rows:
            break
        for row in rows:
            broken = walk.step(_record(row))
            if broken is not None:
                return broken
    return walk.finish(last_id or 0)


def _anchors(items: Sequence[seal.Anchor | str]) -> tuple[dict[int, seal.Anchor], str]:
    """The anchors by entry id, or the first item that is not a valid one."""
    out: dict[int, seal.Anchor] = {}
    for item in items:
        if isinstance(item, str):
            return {}, item
        if item.id in out and out[item.id].hash != item.hash:
            return {}, f"anchors of entry {item.id} disagree ({out[item.id].at}, {item.at})"
        out[item.id] = item
    return out, ""


class _Walk:
    """The state of ``verify``'s walk: the next id, the previous hash, what was seen."""

    def __init__(self, keys: seal.Keyring | None,
                 anchors: list[tuple[str, dict[int, seal.Anchor]]]) -> None:
        self.keys = keys
        self.anchors = anchors
        self.expected_id, self.prev_hash, self.checked, self.keyed = 1, GENESIS_HASH, 0, False

    def broken(self, entry_id: int, reason: str) -> VerifyResult:
        return VerifyResult(self.checked, entry_id, reason, self.prev_hash)

    def step(self, record: AuditRecord) -> VerifyResult | None:
        if record.id != self.expected_id:
            missing = (f"entry {self.expected_id} is missing"
                       if record.id == self.expected_id + 1
                       else f"entries {self.expected_id}-{record.id - 1} are missing")
            return self.broken(record.id, f"gap: {missing}")
        if record.prev_hash != self.prev_hash:
            after = f"entry {record.id - 1}" if record.id > 1 else "the chain's start"
            return self.broken(record.id, f"prev_hash mismatch: does not follow {after}")
        if self.keyed and not record.key_id:
            return self.broken(record.id, "unkeyed after keyed entries: rewritten without "
                                          "the key")
        key = None
        if record.key_id and self.keys is not None:
            key = self.keys.get(record.key_id)
            if key is None:
                return replace(self.broken(record.id, _missing_key(record.key_id, self.keys)),
                               unverifiable=True)
        if chain_hash(record.prev_hash, record, key) != record.hash:
            return self.broken(record.id, "hash mismatch: its fields are not the ones hashed")
        for source, anchors in self.anchors:
            anchor = anchors.get(record.id)
            if anchor is not None and anchor.hash != record.hash:
                return self.broken(record.id, f"differs from its anchor of {anchor.at} in "
                                              f"{source}: the chain was rewritten")
        self.keyed = self.keyed or bool(record.key_id)
        self.checked += 1
        self.expected_id = record.id + 1
        self.prev_hash = record.hash
        return None

    def finish(self, last_id: int) -> VerifyResult:
        beyond = [(a, source) for source, anchors in self.anchors
                  for a in anchors.values() if a.id > last_id]
        if beyond:
            first, source = min(beyond, key=lambda item: item[0].id)
            return VerifyResult(self.checked, first.id,
                                f"truncated: entry {first.id}, anchored at {first.at} in "
                                f"{source}, is missing (the chain ends at "
                                f"{last_id or 'nothing'})", self.prev_hash)
        return VerifyResult(entries=self.checked, head_hash=self.prev_hash,
                            checked=tuple((s, len(a)) for s, a in self.anchors))


def _missing_key(key_id: str, keys: seal.Keyring) -> str:
    return (f"keyed with key id {key_id}, which is not in the keyring (current key id "
            f"{keys.current.key_id}): put the retired key in {seal.KEY_FILE}.{key_id} beside "
            "the key file, or in LLMOPS_AUDIT__PREVIOUS_KEYS")
