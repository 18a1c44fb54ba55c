"""`llmops audit`: check the audit log's hash chain, rotate its key, read its newest entries.

Role: the operator's and the nightly job's view of the audit log. Input: the
database URL from settings (``LLMOPS_DATABASE_URL``, a config file, or the
embedded SQLite file under ``LLMOPS_HOME``). Output: for ``verify``, ``audit
chain intact: N entries; anchors checked: K in the anchor file, J in the specs
repo (refs/llmops/audit-anchors)`` (exit 0; a second line says when the specs
repo was not checked) or ``audit chain broken at entry ID: reason`` /
``audit chain unverifiable at entry ID: ...`` (a key the keyring lacks) (exit
1), plus the head hash with ``--show-head``. The chain's keys and its anchors
come from the settings (``LLMOPS_AUDIT__KEY`` or ``$LLMOPS_HOME/audit-key``,
retired keys beside it or in ``LLMOPS_AUDIT__PREVIOUS_KEYS``; the anchor file;
the specs repo's anchor ref, fetched from a remote); a keyed chain without any
key, or a specs repo that cannot be read, is an error (exit 1). ``rotate-key``
makes a new key file and keeps the old one for verifying (never printing
either). For ``tail``, the newest entries as text or JSON lines.
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
from llmops.engine.source import anchorref
from llmops.engine.store import audit as audit_log
from llmops.engine.store import db, seal

EXIT_BROKEN = 1


def _open_store(cfg: settings.Settings | None = None) -> db.Store:
    """The configured store, which must already hold the audit log.

    Read-only: never migrates, and never creates a SQLite file that is not there.
    """
    cfg = cfg or settings.load()
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
@click.option("--local-only", is_flag=True,
              help="Check the anchor file only, not the specs repo's anchors.")
def verify_cmd(batch_size: int, show_head: bool, local_only: bool) -> None:
    """Walk the whole chain and check every anchor (the anchor file's and the specs
    repo's); exit 0 when intact, 1 naming the first broken entry (edited, rewritten,
    reordered, or missing: truncated) or one whose key is not in the keyring."""
    cfg = settings.load()
    repo = None if local_only else compose.repo_anchors(cfg)
    with _open_store(cfg) as store:
        sealed = store.audit_seal
        elsewhere = []
        if repo is not None and sealed is not None:
            try:
                elsewhere.append(repo.read(sealed.keys))
            except anchorref.AnchorRefError as exc:
                raise anchorref.AnchorRefError(
                    f"cannot read the specs repo's audit anchors: {exc} (--local-only checks "
                    "the anchor file alone)") from None
        result = audit_log.verify(store, batch_size=batch_size, elsewhere=elsewhere)
    click.echo(str(result))
    if repo is None and sealed is not None:
        why = "--local-only" if local_only else "no git specs repo is configured"
        click.echo(f"specs repo anchors: not checked ({why})")
    if show_head and result.ok:
        click.echo(f"head hash: {result.head_hash}")
    if not result.ok:
        sys.exit(EXIT_BROKEN)


@audit.command("rotate-key")
def rotate_key_cmd() -> None:
    """Make a new audit key; the old one is kept (0600, beside it) to verify what it keyed.

    Restart every llmops process (serve, daemon) afterwards: each keys new entries
    with the key it started with. The key itself is never printed."""
    cfg = settings.load()
    if cfg.audit.key is not None:
        raise seal.AuditKeyError(
            "the audit key is set by LLMOPS_AUDIT__KEY: rotate it there (the new key in "
            "LLMOPS_AUDIT__KEY, the old one added to LLMOPS_AUDIT__PREVIOUS_KEYS)")
    path = seal.key_path(cfg)
    new, old = seal.rotate_key_file(path)
    click.echo(f"audit key rotated: new key id {new.key_id} in {path}; the previous key "
               f"{old.key_id} is kept in {seal.retired_path(path, old.key_id)} for verifying")
    click.echo("restart llmops serve and the daemon so they key new entries with it")


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
