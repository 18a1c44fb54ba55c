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

The chain: ``hash = sha256(prev_hash || canonical_encoding(row))`` where the
row's fields (id included) are encoded by ``canonical_encoding`` alone:
JSON with sorted keys, no whitespace, the timestamp as an ISO-8601 UTC string
with microseconds. The first entry has id 1 and ``prev_hash`` = 64 zeros.
Ids are assigned by the appender (last id + 1) under a lock, so they are
gap-free and a missing row shows as a gap. Appends are serialised per
database: ``pg_advisory_xact_lock`` inside the appending transaction on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite. The database refuses UPDATE and
DELETE with triggers (see the migration). Not detectable from the table
alone: removal of the newest rows; anchor ``VerifyResult.head_hash``
externally to cover that.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Select, insert, select, text

from llmops.engine import redact
from llmops.engine.store import db, models
from llmops.engine.store.models import AuditRow

GENESIS_HASH = "0" * 64
MAX_PAGE = 1000
_TOKEN = re.compile(r"^[a-z][a-z0-9_.:-]{0,62}$")
_LIMITS = {"actor": 255, "source_commit": 64, "environment": 63}


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

    @property
    def ok(self) -> bool:
        return self.broken_id is None

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.entries} entries"
        return f"audit chain broken at entry {self.broken_id}: {self.reason}"


# --------------------------------------------------------------------------- encoding


def format_timestamp(at: datetime) -> str:
    """ISO-8601 in UTC with exactly six fractional digits, e.g. 2025-01-02T03:04:05.000006Z."""
    if at.tzinfo is None:
        raise ValueError(f"naive timestamp {at.isoformat()}")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_encoding(record: AuditRecord) -> bytes:
    """The bytes an entry's hash covers: every field but the two hashes, canonical JSON."""
    fields = {
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
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: str, record: AuditRecord) -> str:
    """``sha256(prev_hash || canonical_encoding(record))`` as 64 hex digits."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_encoding(record)).hexdigest()


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
                       prev_hash=row.prev_hash, hash=row.hash)


_COLUMNS = (AuditRow.id, AuditRow.at, AuditRow.actor, AuditRow.source_commit,
            AuditRow.environment, AuditRow.action, AuditRow.target, AuditRow.result,
            AuditRow.reason, AuditRow.details, AuditRow.prev_hash, AuditRow.hash)


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
                record = replace(record, hash=chain_hash(prev, record))
                records.append(record)
                prev = record.hash
            session.execute(insert(AuditRow), [
                {f: getattr(record, f) for f in AuditRecord.__slots__} for record in records])
        return records

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
        stmt: Select[Any] = select(*_COLUMNS)
        for column, value in ((AuditRow.actor, actor), (AuditRow.action, action),
                              (AuditRow.result, result), (AuditRow.environment, environment)):
            if value is not None:
                stmt = stmt.where(column == value)
        if after_id is not None:
            stmt = stmt.where(AuditRow.id < after_id)
        with self.store.connection() as conn:
            if since is not None:
                first = conn.execute(_first_id_from(since)).scalar()
                if first is None:
                    return AuditPage((), None)
                stmt = stmt.where(AuditRow.at >= since, AuditRow.id >= first)
            if until is not None:
                end = conn.execute(_first_id_from(until)).scalar()
                stmt = stmt.where(AuditRow.at < until)
                if end is not None:
                    stmt = stmt.where(AuditRow.id < end)
            stmt = stmt.order_by(AuditRow.id.desc()).limit(limit)
            entries = tuple(_record(row) for row in conn.execute(stmt))
        next_after = entries[-1].id if len(entries) == limit else None
        return AuditPage(entries, next_after)

    def verify(self, *, batch_size: int = 1000) -> VerifyResult:
        return verify(self.store, batch_size=batch_size)


def verify(store: db.Store, *, batch_size: int = 1000) -> VerifyResult:
    """Walk the chain in id order, ``batch_size`` rows per read, in constant memory.

    Checks every entry up to the newest one present when the walk starts and
    returns the first broken one: a ``gap`` (an id missing before it), a
    ``prev_hash mismatch`` (it does not follow its predecessor) or a
    ``hash mismatch`` (its fields are not the ones that were hashed).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    with store.connection() as conn:
        last_id = conn.execute(select(models.AuditRow.id)
                               .order_by(models.AuditRow.id.desc()).limit(1)).scalar()
    if last_id is None:
        return VerifyResult(entries=0)
    expected_id, prev_hash, checked = 1, GENESIS_HASH, 0
    while expected_id <= last_id:
        with store.connection() as conn:
            rows = conn.execute(
                select(*_COLUMNS)
                .where(AuditRow.id >= expected_id, AuditRow.id <= last_id)
                .order_by(AuditRow.id).limit(batch_size)).all()
        if not rows:
            break
        for row in rows:
            record = _record(row)
            if record.id != expected_id:
                missing = (f"entry {expected_id} is missing" if record.id == expected_id + 1
                           else f"entries {expected_id}-{record.id - 1} are missing")
                return VerifyResult(checked, record.id, f"gap: {missing}", prev_hash)
            if record.prev_hash != prev_hash:
                after = f"entry {record.id - 1}" if record.id > 1 else "the chain's start"
                return VerifyResult(checked, record.id,
                                    f"prev_hash mismatch: does not follow {after}", prev_hash)
            if chain_hash(record.prev_hash, record) != record.hash:
                return VerifyResult(checked, record.id,
                                    "hash mismatch: its fields are not the ones hashed",
                                    prev_hash)
            checked += 1
            expected_id = record.id + 1
            prev_hash = record.hash
    return VerifyResult(entries=checked, head_hash=prev_hash)
