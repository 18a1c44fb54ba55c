"""The audit log on SQLite and PostgreSQL: chain, refusal of edits, tampering, concurrency, CLI."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import exc, text

from conftest import CliResult
from llmops.engine import redact
from llmops.engine.store import Store, StoreUnavailable, audit

pytest_plugins = ["store_fixtures"]

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
SECRET = "ghp_S3cr3tT0ken0123456789"


def entry(n: int = 0, **fields: object) -> audit.AuditEntry:
    values: dict[str, object] = {
        "actor": "alice@example.com", "action": "apply",
        "target": f"ServingEndpoint prod/chat-{n}", "result": "intent",
        "environment": "prod", "source_commit": "c" * 40, "reason": f"commit #{n}",
        "details": {"n": n, "objects": ["Deployment/nlp-prod/chat"]}}
    values.update(fields)
    return audit.AuditEntry(**values)  # type: ignore[arg-type]


def ticking_clock(start: datetime = T0, step: timedelta = timedelta(minutes=1),
                  ) -> Callable[[], datetime]:
    times: Iterator[datetime] = (start + i * step for i in range(1_000_000))
    return lambda: next(times)


def fill(store: Store, count: int) -> list[audit.AuditRecord]:
    log = audit.AuditLog(store, clock=ticking_clock())
    return [log.append(entry(i)) for i in range(count)]


def tamper(store: Store, sql: str) -> None:
    """Change the table behind the triggers' back, as a superuser (or a file editor) can."""
    with store.connection(write=True) as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")
            conn.exec_driver_sql(sql)
            conn.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
            conn.exec_driver_sql(sql)


# --------------------------------------------------------------------------- the chain


def test_appends_build_a_valid_chain(store: Store) -> None:
    records = fill(store, 5)
    assert [r.id for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == audit.GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    for record in records:
        assert record.hash == audit.chain_hash(record.prev_hash, record)
    log = audit.AuditLog(store)
    assert [log.get(r.id) for r in records] == records
    assert log.head() == records[-1]
    result = audit.verify(store)
    assert result.ok
    assert result.entries == 5
    assert result.head_hash == records[-1].hash
    assert str(result) == "audit chain intact: 5 entries"
    assert audit.verify(store, batch_size=2) == result


def test_a_batch_extends_the_chain_in_one_transaction_or_not_at_all(store: Store) -> None:
    log = audit.AuditLog(store, clock=ticking_clock())
    first = log.append(entry(0))
    batch = log.extend([entry(i) for i in range(1, 4)])
    assert [r.id for r in batch] == [2, 3, 4]
    assert batch[0].prev_hash == first.hash
    assert [log.get(r.id) for r in batch] == batch
    assert log.append(entry(5)).prev_hash == batch[-1].hash
    with pytest.raises(ValueError, match="lowercase token"):
        log.extend([entry(6), entry(7, action="Apply Now")])
    assert log.extend([]) == []
    result = audit.verify(store)
    assert (result.ok, result.entries) == (True, 5)


def test_an_empty_log_verifies(store: Store) -> None:
    assert audit.verify(store) == audit.VerifyResult(entries=0)
    assert audit.AuditLog(store).head() is None


def test_time_never_runs_backwards_along_the_chain(store: Store) -> None:
    times = iter([T0, T0 - timedelta(hours=1), T0 + timedelta(seconds=1)])
    log = audit.AuditLog(store, clock=lambda: next(times))
    stamps = [log.append(entry(i)).at for i in range(3)]
    assert stamps == [T0, T0, T0 + timedelta(seconds=1)]
    assert audit.verify(store).ok


def test_the_encoding_is_pinned() -> None:
    record = audit.AuditRecord(
        id=7, at=datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC), actor="ci", source_commit="abc",
        environment="dev", action="apply", target="Deployment/ns/x", result="succeeded",
        reason="ok", details={"b": [1, 2.5], "a": {"z": None, "y": "é"}}, prev_hash="0" * 64,
        hash="")
    assert audit.canonical_encoding(record) == (
        '{"action":"apply","actor":"ci","at":"2025-01-02T03:04:05.000006Z",'
        '"details":{"a":{"y":"é","z":null},"b":[1,2.5]},"environment":"dev","id":7,'
        '"reason":"ok","result":"succeeded","source_commit":"abc","target":"Deployment/ns/x"}'
    ).encode()
    # sha256("0" * 64 + the JSON above), computed outside llmops. Changing the
    # encoding breaks every stored chain: this value must never change.
    assert audit.chain_hash("0" * 64, record) == (
        "afa4725b2b9b55f349dc541bda7908027c3bb62f133f6bda512575ceb6d772ef")


def test_malformed_entries_are_refused_before_writing(store: Store) -> None:
    log = audit.AuditLog(store)
    with pytest.raises(ValueError, match="token"):
        log.append(entry(action="Apply Now"))
    with pytest.raises(ValueError, match="actor"):
        log.append(entry(actor=" "))
    with pytest.raises(ValueError, match="JSON"):
        log.append(entry(details={"when": object()}))
    assert audit.verify(store).entries == 0


def test_odd_text_is_stored_and_verifies(store: Store) -> None:
    log = audit.AuditLog(store)
    record = log.append(entry(actor="x" * 400, reason="nul\x00 and \ud800 surrogate",
                              details={"s": "nul\x00", "big": 2**53, "f": 0.1}))
    assert len(record.actor) == 255
    assert "\x00" not in record.reason
    assert log.get(record.id) == record
    assert audit.verify(store).ok


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("sql", [
    "UPDATE audit_log SET reason = 'rewritten' WHERE id = 2",
    "DELETE FROM audit_log WHERE id = 2",
    "DELETE FROM audit_log",
])
def test_the_database_refuses_updates_and_deletes(store: Store, sql: str) -> None:
    fill(store, 3)
    with pytest.raises(exc.DBAPIError, match="append-only"), \
            store.connection(write=True) as conn:
        conn.execute(text(sql))
    assert audit.verify(store).entries == 3
    assert audit.AuditLog(store).get(2) is not None


def test_postgres_refuses_truncate(postgres_url: str) -> None:
    with Store(postgres_url) as store:
        store.migrate()
        fill(store, 2)
        with pytest.raises(exc.DBAPIError, match="append-only"), \
                store.connection(write=True) as conn:
            conn.execute(text("TRUNCATE audit_log"))
        assert audit.verify(store).entries == 2


# --------------------------------------------------------------------------- tampering


def test_a_changed_row_is_named_by_verify(store: Store) -> None:
    fill(store, 6)
    tamper(store, "UPDATE audit_log SET reason = 'nothing to see' WHERE id = 4")
    result = audit.verify(store, batch_size=2)
    assert not result.ok
    assert result.broken_id == 4
    assert result.entries == 3
    assert result.reason.startswith("hash mismatch")
    assert str(result).startswith("audit chain broken at entry 4: hash mismatch")


def test_a_rehashed_row_breaks_the_next_link(store: Store) -> None:
    records = fill(store, 5)
    forged = audit.AuditRecord(**{**records[2].as_dict(), "at": records[2].at,
                                  "reason": "forged"})
    forged_hash = audit.chain_hash(forged.prev_hash, forged)
    tamper(store, f"UPDATE audit_log SET reason = 'forged', hash = '{forged_hash}' WHERE id = 3")
    result = audit.verify(store)
    assert (result.broken_id, result.reason.split(":")[0]) == (4, "prev_hash mismatch")


def test_a_deleted_row_is_a_gap(store: Store) -> None:
    fill(store, 5)
    tamper(store, "DELETE FROM audit_log WHERE id = 3")
    result = audit.verify(store)
    assert result.broken_id == 4
    assert result.reason == "gap: entry 3 is missing"
    tamper_first = "DELETE FROM audit_log WHERE id = 1"
    if store.dialect == "postgresql":
        tamper(store, tamper_first)
    else:
        with store.connection(write=True) as conn:
            conn.exec_driver_sql(tamper_first)
    assert audit.verify(store).broken_id == 2


def test_a_changed_timestamp_or_detail_is_caught(store: Store) -> None:
    fill(store, 3)
    tamper(store, "UPDATE audit_log SET details = '{\"n\": 99, \"objects\": []}' WHERE id = 2")
    assert audit.verify(store).broken_id == 2


# --------------------------------------------------------------------------- concurrency


def test_concurrent_appends_keep_one_chain(store_url: str, store: Store) -> None:
    writers, per_writer = 4, 25
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        with Store(store_url) as own:  # its own engine and connections, like another process
            log = audit.AuditLog(own)
            barrier.wait()
            try:
                for i in range(per_writer):
                    log.append(entry(worker * 100 + i, actor=f"writer-{worker}"))
            except BaseException as err:  # reported below
                errors.append(err)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = audit.verify(store)
    assert result.ok, str(result)
    assert result.entries == writers * per_writer
    page = audit.AuditLog(store).query(limit=1000)
    assert [r.id for r in page.entries] == list(range(writers * per_writer, 0, -1))
    assert {r.actor for r in page.entries} == {f"writer-{w}" for w in range(writers)}


# --------------------------------------------------------------------------- queries


def test_query_filters_and_pages_newest_first(store: Store) -> None:
    log = audit.AuditLog(store, clock=ticking_clock())
    for i in range(30):
        log.append(entry(i, actor="alice" if i % 2 else "bob",
                         action="prune" if i % 3 == 0 else "apply",
                         result="failed" if i % 5 == 0 else "succeeded",
                         environment="prod" if i < 15 else "dev"))
    everything = log.query(limit=1000).entries
    assert [r.id for r in everything] == list(range(30, 0, -1))

    seen: list[int] = []
    after: int | None = None
    while True:
        page = log.query(after_id=after, limit=7)
        seen.extend(r.id for r in page.entries)
        if page.next_after_id is None:
            break
        after = page.next_after_id
    assert seen == list(range(30, 0, -1))

    bob_prunes = log.query(actor="bob", action="prune").entries
    assert bob_prunes
    assert all(r.actor == "bob" and r.action == "prune" for r in bob_prunes)
    assert {r.id for r in bob_prunes} == {i + 1 for i in range(30) if i % 2 == 0 and i % 3 == 0}
    failed_dev = log.query(result="failed", environment="dev").entries
    assert [r.id for r in failed_dev] == [26, 21, 16]
    window = log.query(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=13))
    assert [r.id for r in window.entries] == [13, 12, 11]
    assert log.query(actor="nobody").entries == ()


# --------------------------------------------------------------------------- secrets


def test_credentials_are_masked_before_hashing(store: Store) -> None:
    log = audit.AuditLog(store)
    record = log.append(entry(
        actor=f"https://bot:{SECRET}@git.example.com",
        target=f"git https://ci:{SECRET}@git.example.com/org/specs.git",
        reason=f"fetch failed: password={SECRET} token: {SECRET}",
        details={"token": SECRET, "url": f"https://x:{SECRET}@h/r", "nested": [
            {"Authorization": f"Bearer {SECRET}"}]}))
    assert record.target == "git https://***@git.example.com/org/specs.git"
    assert record.reason == "fetch failed: password=*** token: ***"
    assert record.details == {"token": "***", "url": "https://***@h/r",
                              "nested": [{"Authorization": "***"}]}
    assert log.get(record.id) == record
    assert audit.verify(store).ok
    with store.connection() as conn:
        dump = repr(conn.exec_driver_sql("SELECT * FROM audit_log").all())
    assert SECRET not in dump


@pytest.mark.parametrize(("raw", "masked"), [
    ("https://user:token@host/x", "https://***@host/x"),
    ("https://user:p@ss@host/x?q=1 mail bob@example.com",
     "https://***@host/x?q=1 mail bob@example.com"),
    ("clone ssh://git:pw@h:22/r and https://ghp_abc@github.com/o/r",
     "clone ssh://***@h:22/r and https://***@github.com/o/r"),
    ("postgresql://llmops:s3cret@db:5432/llmops", "postgresql://***@db:5432/llmops"),
    ("password=hunter2 user=bob", "password=*** user=bob"),
    ("db_password: 'a b c', next", "db_password: '***', next"),
    ('{"api_key": "k-123", "name": "x"}', '{"api_key": "***", "name": "x"}'),
    ("GET /x?access_token=abc&page=2", "GET /x?access_token=***&page=2"),
    ("Authorization: Bearer eyJhbGciOi.J9", "Authorization: Bearer ***"),
    ("sent bearer abcdefghijklmnop", "sent bearer ***"),
    ("max_tokens: 512 and replicas=3", "max_tokens: 512 and replicas=3"),
    ("plain text with no secrets", "plain text with no secrets"),
])
def test_redact(raw: str, masked: str) -> None:
    assert redact.redact(raw) == masked
    assert redact.redact(masked) == masked


# --------------------------------------------------------------------------- availability


def test_append_to_an_unreachable_store_raises() -> None:
    with Store("postgresql://llmops:pw@127.0.0.1:1/llmops", connect_timeout=1) as store, \
            pytest.raises(StoreUnavailable):
        audit.AuditLog(store).append(entry())


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, store_url: str) -> str:
    monkeypatch.delenv("LLMOPS_CONFIG", raising=False)
    monkeypatch.setenv("LLMOPS_DATABASE_URL", store_url)
    return store_url


def test_cli_verify_exit_codes(cli_env: str, store: Store, cli: Callable[..., CliResult],
                               ) -> None:
    head = fill(store, 3)[-1]
    ok = cli("audit", "verify", "--show-head")
    assert ok.code == 0, ok.err
    assert ok.out.splitlines() == ["audit chain intact: 3 entries", f"head hash: {head.hash}"]
    tamper(store, "UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    broken = cli("audit", "verify")
    assert broken.code == 1
    assert broken.out.strip() == (
        "audit chain broken at entry 2: hash mismatch: its fields are not the ones hashed")


def test_cli_tail_shows_newest_entries(cli_env: str, store: Store,
                                       cli: Callable[..., CliResult]) -> None:
    fill(store, 3)
    shown = cli("audit", "tail", "-n", "2")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert [line.split()[0] for line in lines] == ["3", "2"]
    assert "alice@example.com apply ServingEndpoint prod/chat-2 [prod]" in lines[0]
    as_json = cli("audit", "tail", "--json", "--actor", "alice@example.com")
    assert as_json.out.count("\n") == 3


def test_cli_verify_creates_no_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        cli: Callable[..., CliResult]) -> None:
    monkeypatch.delenv("LLMOPS_CONFIG", raising=False)
    monkeypatch.delenv("LLMOPS_DATABASE_URL", raising=False)
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    missing = cli("audit", "verify")
    assert missing.code == 1
    assert "no llmops state at" in missing.err
    assert not (tmp_path / "home").exists()


def test_cli_verify_on_an_unmigrated_or_unreachable_store(
        cli_env: str, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., CliResult]) -> None:
    with Store(cli_env) as unmigrated:
        unmigrated.ping()
    empty = cli("audit", "verify")
    assert empty.code == 1
    assert "never migrated" in empty.err
    monkeypatch.setenv("LLMOPS_DATABASE_URL", "postgresql://llmops:pw@127.0.0.1:1/llmops")
    down = cli("audit", "verify")
    assert down.code == 1
    assert down.err.startswith("error: store postgresql+psycopg://llmops:***@127.0.0.1:1/llmops")
