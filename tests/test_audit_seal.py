"""The keyed, anchored audit chain: what someone who can write every row cannot hide.

The attacker here holds the database (triggers off, any row rewritten and every
hash recomputed as the unkeyed chain allows) but neither the HMAC key nor the
anchor file: rewriting, reordering and truncating must all be named by verify.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import delete, insert

from conftest import CliResult
from llmops.engine import settings
from llmops.engine.service import compose
from llmops.engine.settings import Settings
from llmops.engine.store import Store, audit, seal
from llmops.engine.store.models import AuditRow

pytest_plugins = ["store_fixtures"]

KEY = seal.AuditKey(bytes(range(32)))
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def sealed(store: Store, tmp_path: Path) -> Store:
    """The store keyed with ``KEY``, anchoring every 5 entries to a file under tmp_path."""
    keys = seal.Keyring(KEY)
    store.audit_seal = seal.Seal(keys, seal.AnchorFile(tmp_path / "anchors.jsonl", keys,
                                                       every=5))
    return store


def fill(store: Store, count: int) -> list[audit.AuditRecord]:
    times = iter([T0 + timedelta(seconds=i) for i in range(count)])
    log = audit.AuditLog(store, clock=lambda: next(times))
    return [log.append(audit.AuditEntry("alice", "apply", f"Deployment/prod/chat-{n}",
                                        "succeeded", reason=f"entry {n}"))
            for n in range(count)]


def rechain(records: Sequence[audit.AuditRecord], prev: str,
            key: seal.AuditKey | None = None) -> list[audit.AuditRecord]:
    """``records`` linked again from ``prev``, hashed as an attacker can: unkeyed (or with
    a key of their own)."""
    out = []
    for record in records:
        record = replace(record, prev_hash=prev, key_id=key.key_id if key else "")
        record = replace(record, hash=audit.chain_hash(prev, record, key))
        out.append(record)
        prev = record.hash
    return out


def overwrite(store: Store, records: Sequence[audit.AuditRecord], *,
              drop_from: int | None = None) -> None:
    """Replace rows ``drop_from`` and later by ``records``, behind the triggers' back."""
    first = drop_from if drop_from is not None else min(r.id for r in records)
    with store.connection(write=True) as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_delete")
        conn.execute(delete(AuditRow).where(AuditRow.id >= first))
        if records:
            conn.execute(insert(AuditRow), [
                {f: getattr(r, f) for f in audit.AuditRecord.__slots__} for r in records])
        if store.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER USER")


def test_a_keyed_chain_verifies_and_checks_every_anchor(sealed: Store, tmp_path: Path) -> None:
    records = fill(sealed, 12)
    assert {r.key_id for r in records} == {KEY.key_id}
    assert records[3].hash != audit.chain_hash(records[3].prev_hash,
                                               replace(records[3], key_id=""))
    assert audit.AuditLog(sealed).anchor() is not None  # as the reconciler does per pass
    lines = (tmp_path / "anchors.jsonl").read_text().splitlines()
    assert [int(line.split(",")[0].split(":")[1]) for line in lines] == [5, 10, 12]
    assert stat.S_IMODE(os.stat(tmp_path / "anchors.jsonl").st_mode) == 0o600
    result = audit.verify(sealed, batch_size=4)
    assert result.ok, result
    assert (result.entries, result.anchors) == (12, 3)
    assert str(result) == ("audit chain intact: 12 entries; anchors checked: 3 in the "
                           "anchor file")


def test_a_row_rewritten_and_rehashed_without_the_key_is_caught(sealed: Store) -> None:
    records = fill(sealed, 8)
    forged = replace(records[2], reason="nothing happened")
    overwrite(sealed, rechain([forged, *records[3:]], records[1].hash))
    result = audit.verify(sealed)
    assert (result.broken_id, result.reason.split(":")[0]) == (3, "unkeyed after keyed entries")
    # The same, keeping the key id but hashing with a key of the attacker's.
    mallory = seal.AuditKey(b"m" * 32)
    overwrite(sealed, [replace(r, key_id=KEY.key_id)
                       for r in rechain([forged, *records[3:]], records[1].hash, mallory)])
    result = audit.verify(sealed)
    assert (result.broken_id, result.reason.split(":")[0]) == (3, "hash mismatch")


def test_a_whole_chain_rewritten_unkeyed_is_caught_by_its_anchors(sealed: Store) -> None:
    records = fill(sealed, 7)
    forged = [replace(r, actor="mallory") if r.id == 2 else r for r in records]
    overwrite(sealed, rechain(forged, audit.GENESIS_HASH))
    result = audit.verify(sealed)
    assert result.broken_id == 5
    assert "differs from its anchor" in result.reason


def test_a_truncated_tail_is_caught_by_its_anchor(sealed: Store) -> None:
    fill(sealed, 10)  # anchors at 5 and 10
    overwrite(sealed, [], drop_from=8)
    result = audit.verify(sealed)
    assert not result.ok
    assert result.broken_id == 10
    assert result.reason.startswith("truncated: entry 10, anchored at ")
    assert result.reason.endswith("is missing (the chain ends at 7)")


def test_two_swapped_rows_are_caught(sealed: Store) -> None:
    records = fill(sealed, 6)
    swapped = [replace(records[3], id=3), replace(records[2], id=4)]
    overwrite(sealed, rechain([*swapped, *records[4:]], records[1].hash))
    assert audit.verify(sealed).broken_id == 3
    # Swapped and left as they were hashed: the links no longer follow.
    overwrite(sealed, [*swapped, *records[4:]], drop_from=3)
    result = audit.verify(sealed)
    assert (result.broken_id, result.reason.split(":")[0]) == (3, "prev_hash mismatch")


def test_a_forged_or_edited_anchor_is_caught(sealed: Store, tmp_path: Path) -> None:
    records = fill(sealed, 5)
    path = tmp_path / "anchors.jsonl"
    path.write_text(path.read_text().replace(records[4].hash, records[3].hash))
    result = audit.verify(sealed)
    assert str(result) == ("audit anchors broken: anchor line 1 is forged (its MAC does not "
                           "match the key) (in the anchor file)")


def test_verifying_a_keyed_chain_without_the_key_is_a_clear_error(sealed: Store) -> None:
    fill(sealed, 2)
    sealed.audit_seal = None
    with pytest.raises(seal.AuditKeyError, match="no audit key: entry 1 is keyed"):
        audit.verify(sealed)
    other = seal.AuditKey(b"x" * 32)
    result = audit.verify(sealed, sealed=seal.Seal(seal.Keyring(other)))
    assert (result.broken_id, result.unverifiable) == (1, True)
    assert str(result).startswith(f"audit chain unverifiable at entry 1: keyed with key id "
                                  f"{KEY.key_id}, which is not in the keyring")


def test_the_key_is_a_private_file_outside_the_database(tmp_path: Path) -> None:
    cfg = Settings(home=tmp_path / "home")
    with compose.open_store(cfg) as store:
        audit.AuditLog(store).append(audit.AuditEntry("ci", "apply", "x", "succeeded"))
        key_file = tmp_path / "home" / seal.KEY_FILE
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        secret = key_file.read_text().strip()
        assert store.audit_seal is not None
        assert secret not in repr(store.audit_seal)
        assert audit.verify(store).ok
    assert secret.encode() not in (tmp_path / "home" / "llmops.db").read_bytes()
    assert bytes.fromhex(secret) not in (tmp_path / "home" / "llmops.db").read_bytes()
    with compose.open_store(cfg) as again:  # the same key next time
        assert again.audit_seal is not None
        assert audit.verify(again).ok
    key_file.chmod(0o644)
    with pytest.raises(seal.AuditKeyError, match="readable by others"):
        seal.from_settings(cfg, create=False)


def test_a_process_with_another_key_refuses_to_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with compose.open_store(Settings(home=tmp_path / "one", database_url=url)) as store:
        fill(store, 1)
    other = Settings(home=tmp_path / "two", database_url=url)  # its own, new key
    with pytest.raises(seal.AuditKeyError, match="the audit chain is keyed with key id "):
        compose.open_store(other)
    secret = (tmp_path / "one" / seal.KEY_FILE).read_text().strip()
    with compose.open_store(other.model_copy(update={"audit": settings.AuditSettings(
            key=SecretStr(secret))})) as shared:
        assert audit.verify(shared).ok


@pytest.fixture
def keyed_cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for name in ("LLMOPS_CONFIG", "LLMOPS_DATABASE_URL", "LLMOPS_AUDIT__KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    return Settings(home=tmp_path / "home")


def test_cli_verify_checks_anchors_and_names_a_missing_key(
        keyed_cli_env: Settings, cli: Callable[..., CliResult]) -> None:
    with compose.open_store(keyed_cli_env) as store:
        fill(store, 3)
        audit.AuditLog(store).anchor()
    ok = cli("audit", "verify")
    assert ok.code == 0
    assert ok.out.splitlines() == [
        "audit chain intact: 3 entries; anchors checked: 1 in the anchor file",
        "specs repo anchors: not checked (no git specs repo is configured)"]
    key_file = keyed_cli_env.home / seal.KEY_FILE
    secret = key_file.read_text().strip()
    key_file.unlink()
    missing = cli("audit", "verify")
    assert missing.code == 1
    assert "no audit key: entry 1 is keyed" in missing.err
    assert "LLMOPS_AUDIT__KEY" in missing.err
    assert secret not in missing.out + missing.err
