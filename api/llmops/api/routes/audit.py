"""The audit log, read-only: ``GET /governance/audit/logs``.

Role: query the hash-chained audit log by actor, action, result,
environment and time range, newest first, paged by ``after_id`` / ``limit``
(at most 1000) with ``nextCursor``. A ``since`` at or after ``until`` is an
empty range: no entries (the schema cannot relate two parameters, so it is not
refused). Entries are returned exactly as stored (they were redacted before
they were hashed), hashes and each one's key fingerprint (``keyId``) included, so
a holder of the audit key can check the chain. Needs ``audit:read``. Input: query
parameters; ``AuditLogDep``. Output:
``AuditPageOut`` in the envelope (``logs`` returns it, for the dashboard; the route
answers it as serialised JSON: ``envelope.serialised``). Caller: ``llmops.api.app`` mounts
``router``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from llmops.api.auth import AUTH_RESPONSES, require
from llmops.api.deps import AuditLogDep
from llmops.api.envelope import AuditEntryOut, AuditPageOut, Envelope, serialised, success
from llmops.api.params import MAX_ROW_ID, RANGE_HELP, Instant
from llmops.engine.spec.schema import Permission
from llmops.engine.store import audit

router = APIRouter(prefix="/governance/audit", tags=["governance"], responses=AUTH_RESPONSES)

TOKEN_MAX = 63

def logs(
    log: AuditLogDep,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[str | None, Query(max_length=TOKEN_MAX)] = None,
    result: Annotated[str | None, Query(max_length=TOKEN_MAX)] = None,
    environment: Annotated[str | None, Query(max_length=TOKEN_MAX)] = None,
    since: Annotated[Instant | None, Query(description=f"Inclusive. {RANGE_HELP}")] = None,
    until: Annotated[Instant | None, Query(description=f"Exclusive. {RANGE_HELP}")] = None,
    after_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID,
                                          description="Cursor: entries older than this id "
                                                      "(a previous nextCursor).")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
) -> Envelope[AuditPageOut]:
    """Entries matching every given filter, newest first."""
    # One entry more than asked tells whether another page exists (exact nextCursor);
    # at the store's cap, its own cursor (set when the page is full) is used.
    probe = min(limit + 1, audit.MAX_PAGE)
    page = log.query(actor=actor, action=action, result=result, environment=environment,
                     since=since, until=until, after_id=after_id, limit=probe)
    entries = page.entries[:limit]
    if probe > limit:
        cursor = entries[-1].id if len(page.entries) > limit else None
    else:
        cursor = page.next_after_id
    return success(AuditPageOut(entries=[AuditEntryOut.of(e) for e in entries],
                                next_cursor=cursor), f"{len(entries)} entr"
                   f"{'y' if len(entries) == 1 else 'ies'}")


router.get("/logs", response_model=Envelope[AuditPageOut], summary="Audit log entries",
           dependencies=[require(Permission.AUDIT_READ)])(serialised(logs))
