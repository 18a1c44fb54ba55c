"""`llmops audit`: check the audit log's hash chain (and read its newest entries).

Role: the operator's and the nightly job's view of the audit log. Input: the
database URL from settings (``LLMOPS_DATABASE_URL``, a config file, or the
embedded SQLite file under ``LLMOPS_HOME``). Output: for ``verify``, one
line, ``audit chain intact: N entries, K anchors checked`` (exit 0) or ``audit
chain broken at entry ID: reason`` (exit 1), plus the head hash with
``--show-head``. The chain's HMAC key and its anchors come from the settings
(``LLMOPS_AUDIT__KEY`` or ``$LLMOPS_HOME/audit-key``; the anchor file); a keyed
chain without its key is an error naming where the key goes (exit 1). For
``tail``, the newest entries as text or JSON lines.
Caller: ``llmops.cli`` registers the ``audit`` group; ``llmops.cli.main``
maps ``StoreUnavailable`` (an ``LlmopsError``) to one error line and exit 1.

This module does not import ``llmops.cli`` (that module imports this one).
"""

from __future__ import annotations

import sys

import click
import orjson

from llmops.engine import settings
from llmops.engine.service import compose
from llmops.engine.store import audit as audit_log
from llmops.engine.store import db, seal

EXIT_BROKEN = 1


def _open_store() -> db.Store:
    """The configured store, which must already hold the audit log.

    Read-only: never migrates, and never creates a SQLite file that is not there.
    """
    cfg = settings.load()
    store = compose.store_at(compose.existing_database_url(cfg), cfg)
    if store.schema_revision() is None:
        store.close()
        raise db.StoreError(store.display_url,
                            "no audit log here (the store was never migrated; start the "
                            "daemon or the API once, or point LLMOPS_DATABASE_URL elsewhere)")
    try:
        store.audit_seal = seal.from_settings(cfg, create=False)
    except seal.AuditKeyError:
        store.close()
        raise
    return store


@click.group("audit")
def audit() -> None:
    """Inspect the append-only, hash-chained audit log."""


@audit.command("verify")
@click.option("--batch-size", type=click.IntRange(min=1, max=100_000), default=1000,
              show_default=True, help="Entries read per query while walking the chain.")
@click.option("--show-head", is_flag=True,
              help="Also print the hash of the newest entry, to anchor outside the database.")
def verify_cmd(batch_size: int, show_head: bool) -> None:
    """Walk the whole chain and check every anchor; exit 0 when intact, 1 naming the
    first broken entry (edited, rewritten, reordered, or missing: truncated)."""
    with _open_store() as store:
        result = audit_log.verify(store, batch_size=batch_size)
    click.echo(str(result))
    if show_head and result.ok:
        click.echo(f"head hash: {result.head_hash}")
    if not result.ok:
        sys.exit(EXIT_BROKEN)


@audit.command("tail")
@click.option("-n", "--limit", type=click.IntRange(min=1, max=audit_log.MAX_PAGE), default=20,
              show_default=True, help="How many of the newest entries to show.")
@click.option("--actor", default=None, help="Only entries by this actor.")
@click.option("--action", default=None, help="Only entries with this action (e.g. apply).")
@click.option("--result", "result_", default=None, help="Only entries with this result.")
@click.option("--environment", default=None, help="Only entries about this environment.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def tail_cmd(limit: int, actor: str | None, action: str | None, result_: str | None,
             environment: str | None, as_json: bool) -> None:
    """Print the newest audit entries, newest first."""
    with _open_store() as store:
        page = audit_log.AuditLog(store).query(actor=actor, action=action, result=result_,
                                               environment=environment, limit=limit)
    for entry in page.entries:
        if as_json:
            click.echo(orjson.dumps(entry.as_dict(), option=orjson.OPT_SORT_KEYS).decode())
            continue
        where = f" [{entry.environment}]" if entry.environment else ""
        commit = f" @{entry.source_commit[:12]}" if entry.source_commit else ""
        reason = f": {entry.reason}" if entry.reason else ""
        click.echo(f"{entry.id} {audit_log.format_timestamp(entry.at)} {entry.actor} "
                   f"{entry.action} {entry.target}{where}{commit} -> {entry.result}{reason}")
