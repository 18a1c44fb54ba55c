"""The state store on SQLite and PostgreSQL: migrations, runs, inventory, status, failures."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, exc, inspect, text

from llmops.engine.store import Store, StoreUnavailable, audit, db, models, state
from llmops.engine.store.models import RunResult, SourceState
from llmops.engine.types import ResourceKey, SpecKey

pytest_plugins = ["store_fixtures"]

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TABLES = {"reconcile_runs", "inventory", "spec_status", "object_status", "environment_status",
          "gpu_samples", "audit_log", "leader_epoch", "alembic_version"}


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'llmops.db'}"


def item(name: str, *, kind: str = "Deployment", group: str = "apps", revision: str = "a" * 40,
         content: str = "h1") -> state.InventoryItem:
    return state.InventoryItem(ResourceKey(group, kind, "nlp-dev", name), f"{group}/v1", content,
                               "ServingEndpoint", name, revision)


# --------------------------------------------------------------------------- migrations


def test_migrate_creates_the_schema_and_twice_is_a_no_op(store_url: str) -> None:
    with Store(store_url) as store:
        assert store.schema_revision() is None
        assert store.migrate() == "0008"
        with store.connection() as conn:
            tables = set(inspect(conn).get_table_names())
        assert tables >= TABLES
        audit.AuditLog(store).append(audit.AuditEntry("ci", "apply", "x", "intent"))
        assert store.migrate() == "0008"
        with store.connection() as conn:
            assert set(inspect(conn).get_table_names()) == tables
        assert audit.verify(store).entries == 1


def test_concurrent_migrations_from_several_processes_both_succeed(store_url: str) -> None:
    stores = [Store(store_url) for _ in range(3)]
    barrier = threading.Barrier(len(stores))
    results: list[str] = []
    errors: list[BaseException] = []

    def run(store: Store) -> None:
        barrier.wait()
        try:
            results.append(store.migrate())
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert errors == []
    assert results == ["0008"] * 3


def test_migration_matches_the_models(store: Store) -> None:
    with store.connection() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), models.Base.metadata)
    assert diff == []


def test_upgrade_from_0004_keeps_runs_and_status_with_unknown_commits(store_url: str) -> None:
    """0005 adds the commit's author and subject and the plan detail to rows that exist."""
    with Store(store_url) as store:
        config = db.alembic_config()
        with store.connection(write=True) as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0004")
        with store.connection(write=True) as conn:
            conn.execute(text(
                "INSERT INTO reconcile_runs (environment, revision, started_at, result, counts,"
                " error, plan) VALUES ('prod', :sha, :at, 'succeeded', '{}', '', '{}')"),
                {"sha": "a" * 40, "at": T0.replace(tzinfo=None)})
            conn.execute(text(
                "INSERT INTO environment_status (environment, observed_revision,"
                " last_applied_revision, last_attempted_revision, conditions, source_state,"
                " source_message, updated_at) VALUES ('prod', :sha, :sha, :sha, '{}',"
                " 'available', '', :at)"), {"sha": "a" * 40, "at": T0.replace(tzinfo=None)})
        assert store.migrate() == "0008"
        (run,) = state.list_runs(store)
        assert (run.revision, run.author, run.subject) == ("a" * 40, "", "")
        detail = state.get_run(store, run.id)
        assert detail is not None
        assert detail.plan_detail is None
        status = state.get_environment_status(store, "prod")
        assert status is not None
        assert (status.observed_revision, status.observed_author) == ("a" * 40, "")
        with store.connection() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("reconcile_runs")}
        assert {"author", "subject", "plan_detail"} <= columns


def test_upgrade_from_0006_fills_the_model_column_and_indexes_the_api_filters(
        store_url: str) -> None:
    """0007: the model an endpoint serves (a training job starts from) becomes a column,
    filled for rows that exist; the API's filters get their indexes."""
    with Store(store_url) as store:
        config = db.alembic_config()
        with store.connection(write=True) as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0006")
        specs = {"e": ("ServingEndpoint", {"spec": {"modelRef": {"name": "chat",
                                                                 "version": "1.2.0"}}}),
                 "j": ("TrainingJob", {"spec": {"baseModelRef": {"name": "base",
                                                                 "version": "2.0.0"}}}),
                 "m": ("Model", {"spec": {"version": "1.0.0"}}),
                 "x": ("ServingEndpoint", {"spec": {"modelRef": "not a mapping"}})}
        with store.connection(write=True) as conn:
            for row_id, (kind, spec) in specs.items():
                conn.execute(text(
                    "INSERT INTO spec_catalog (id, kind, environment, name, revision, file,"
                    " spec, updated_at) VALUES (:id, :kind, 'dev', :id, :sha, 'f.yaml',"
                    " :spec, :at)"), {"id": row_id, "kind": kind, "sha": "a" * 40,
                                      "spec": json.dumps(spec),
                                      "at": T0.replace(tzinfo=None)})
        assert store.migrate() == "0008"
        with store.connection() as conn:
            models_of = dict(conn.execute(text("SELECT id, model FROM spec_catalog")).all())
            indexes = {table: {i["name"] for i in inspect(conn).get_indexes(table)}
                       for table in ("spec_catalog", "spec_status", "inventory",
                                     "reconcile_runs")}
    assert models_of == {"e": "chat@1.2.0", "j": "base@2.0.0", "m": "", "x": ""}
    assert "ix_spec_catalog_kind_model" in indexes["spec_catalog"]
    assert "ix_spec_status_kind_health" in indexes["spec_status"]
    assert "ix_inventory_environment_spec" in indexes["inventory"]
    assert "ix_reconcile_runs_result_id" in indexes["reconcile_runs"]


def test_owned_objects_are_one_specs_inventory_with_each_objects_status(store: Store) -> None:
    mine = [ResourceKey("apps", "Deployment", "ns", "chat"), ResourceKey("", "Service", "ns",
                                                                         "chat")]
    other = ResourceKey("apps", "Deployment", "ns", "sql")
    state.replace_inventory(store, "dev", [
        *(state.InventoryItem(k, "v1", "h", "ServingEndpoint", "chat", "a" * 40) for k in mine),
        state.InventoryItem(other, "v1", "h", "ServingEndpoint", "sql", "a" * 40)])
    state.replace_inventory(store, "prod", [
        state.InventoryItem(mine[0], "v1", "h", "ServingEndpoint", "chat", "a" * 40)])
    state.put_object_status(store, state.ObjectStatus("dev", mine[0], "Healthy"),
                            state.ObjectStatus("prod", mine[0], "Degraded"),
                            state.ObjectStatus("dev", other, "Degraded"))
    owned = state.owned_objects(store, "dev", "ServingEndpoint", "chat")
    assert [(item.key, s.health if s else None) for item, s in owned] == [
        (mine[1], None), (mine[0], "Healthy")]  # sorted by ResourceKey; never assessed: None
    assert state.owned_objects(store, "stg", "ServingEndpoint", "chat") == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    with Store(sqlite_url(tmp_path)) as store:
        store.migrate()
        with store.connection() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    store = Store("postgresql://u:pw@db.example:5432/llmops")
    assert store.url.drivername == "postgresql+psycopg"
    assert "pw" not in store.display_url
    assert "pw" not in repr(store)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("url", [
    "postgresql://llmops:sekret@127.0.0.1:1/llmops",
    "postgresql+psycopg://llmops:sekret@127.0.0.1:1/llmops",
])
def test_closed_postgres_port_is_store_unavailable(url: str) -> None:
    with Store(url, connect_timeout=2) as store:
        with pytest.raises(StoreUnavailable) as caught:
            store.ping()
        assert "sekret" not in str(caught.value)
        assert "127.0.0.1:1" in str(caught.value)
        with pytest.raises(StoreUnavailable):
            store.migrate()
        with pytest.raises(StoreUnavailable):
            audit.AuditLog(store).append(audit.AuditEntry("ci", "apply", "x", "intent"))
        with pytest.raises(StoreUnavailable):
            state.read_inventory(store, "dev")


def test_unwritable_sqlite_path_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    with Store(f"sqlite:///{blocker / 'llmops.db'}") as store:
        with pytest.raises(StoreUnavailable, match="unable to open database file"):
            store.ping()
        with pytest.raises(StoreUnavailable):
            store.migrate()


def test_ping_succeeds_on_a_reachable_store(store: Store) -> None:
    store.ping()


def test_default_sqlite_file_gets_its_directory(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'home' / '.llmops' / 'llmops.db'}") as store:
        store.migrate()
    assert (tmp_path / "home" / ".llmops" / "llmops.db").is_file()


# --------------------------------------------------------------------------- runs


def test_run_round_trip(store: Store) -> None:
    run = state.start_run(store, "prod", "c" * 40, started_at=T0)
    assert run.result is RunResult.RUNNING
    assert run.finished_at is None
    plan = {"summary": ["chat-model 1.2.0 -> 1.3.0"], "objects": [
        {"key": "Deployment/nlp-prod/chat", "action": "configured", "result": "succeeded"}]}
    done = state.finish_run(store, run.id, RunResult.SUCCEEDED,
                            counts=state.RunCounts(created=1, configured=2, unchanged=7),
                            plan=plan, finished_at=T0 + timedelta(seconds=3))
    again = state.get_run(store, run.id)
    assert again == done
    assert again.started_at == T0
    assert again.started_at.tzinfo is UTC
    assert again.finished_at == T0 + timedelta(seconds=3)
    assert again.counts == state.RunCounts(created=1, configured=2, unchanged=7)
    assert again.plan == plan
    assert again.error == ""
    failed = state.start_run(store, "prod", "d" * 40)
    state.finish_run(store, failed.id, RunResult.FAILED, error="apply: Conflict",
                     counts=state.RunCounts(failed=1))
    state.start_run(store, "dev", "d" * 40)
    prod = state.list_runs(store, environment="prod")
    assert [r.id for r in prod] == [failed.id, run.id]
    assert prod[0].error == "apply: Conflict"
    assert prod[0].result is RunResult.FAILED
    assert [r.id for r in state.list_runs(store, result=RunResult.SUCCEEDED)] == [run.id]
    assert [r.id for r in state.list_runs(store, environment="prod", before_id=failed.id)] == [
        run.id]
    assert state.get_run(store, 999_999) is None
    with pytest.raises(KeyError):
        state.finish_run(store, 999_999, RunResult.FAILED)


def test_a_run_keeps_its_commit_and_its_plan_detail_only_for_one_run_reads(
        store: Store) -> None:
    detail = {"specs": [{"title": "ServingEndpoint/prod/chat", "details": ["replicas"]}],
              "objects": [{"id": "apps/Deployment/nlp-prod/chat", "diff": "+x"}]}
    run = state.start_run(store, "prod", "c" * 40, author="Ada <ada@example.com>",
                          subject="chat: 3 replicas", plan_detail=detail)
    state.finish_run(store, run.id, RunResult.SUCCEEDED)
    (listed,) = state.list_runs(store, environment="prod")
    assert (listed.author, listed.subject) == ("Ada <ada@example.com>", "chat: 3 replicas")
    assert listed.plan_detail is None  # a listing never loads the diffs
    one = state.get_run(store, run.id)
    assert one is not None
    assert one.plan_detail == detail
    assert one.author == "Ada <ada@example.com>"


# --------------------------------------------------------------------------- inventory


def test_inventory_is_replaced_per_environment(store: Store) -> None:
    assert state.read_inventory(store, "dev") == []
    dev = [item("chat"), item("chat", kind="Service", group=""), item("embed")]
    assert state.replace_inventory(store, "dev", dev) == 3
    state.replace_inventory(store, "prod", [item("chat", revision="b" * 40)])
    assert state.read_inventory(store, "dev") == sorted(dev, key=lambda i: i.key)
    state.replace_inventory(store, "dev", [item("chat", content="h2")])
    assert state.read_inventory(store, "dev") == [item("chat", content="h2")]
    assert state.read_inventory(store, "prod") == [item("chat", revision="b" * 40)]
    state.replace_inventory(store, "dev", [])
    assert state.read_inventory(store, "dev") == []


def test_an_inventory_replaced_against_the_one_read_writes_only_the_difference(
        store: Store) -> None:
    state.replace_inventory(store, "dev", [item(f"obj-{i:03d}") for i in range(300)])
    state.replace_inventory(store, "prod", [item("chat")])
    current = {i.key: i for i in state.read_inventory(store, "dev")}
    b = "b" * 40
    new = [item(f"obj-{i:03d}", revision=b) for i in range(2, 300)]
    new[0] = item("obj-002", revision=b, content="h2")  # changed
    new[1] = item("obj-003")  # a failed delete: kept as the old revision applied it
    new.append(item("obj-999", revision=b))  # added; obj-000 and obj-001 removed
    written: list[tuple[str, int]] = []

    def count(conn: object, cursor: object, statement: str, params: object, context: object,
              many: bool) -> None:
        verb = statement.split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            written.append((verb, len(params) if many else 1))  # type: ignore[arg-type]

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        assert state.replace_inventory(store, "dev", new, current=current) == 299
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert state.read_inventory(store, "dev") == sorted(new, key=lambda i: i.key)
    assert state.read_inventory(store, "prod") == [item("chat")]
    # Two rows deleted, one statement stamping the new revision, two rows set by key
    # (the changed one, the one keeping its revision), one inserted: not 300 rows again.
    assert written == [("DELETE", 2), ("UPDATE", 1), ("UPDATE", 2), ("INSERT", 1)]


def test_a_failure_mid_replacement_keeps_the_old_inventory(store: Store) -> None:
    old = [item("chat"), item("embed")]
    state.replace_inventory(store, "dev", old)

    def half_then_fail() -> Iterator[state.InventoryItem]:
        yield item("new-1")
        yield item("new-2")
        raise RuntimeError("render failed midway")

    with pytest.raises(RuntimeError, match="midway"):
        state.replace_inventory(store, "dev", half_then_fail())
    assert state.read_inventory(store, "dev") == old
    with pytest.raises(ValueError, match="listed twice"):
        state.replace_inventory(store, "dev", [item("x"), item("x")])
    assert state.read_inventory(store, "dev") == old
    many = [item(f"obj-{i:04d}") for i in range(2500)]
    assert state.replace_inventory(store, "dev", many) == 2500
    assert len(state.read_inventory(store, "dev")) == 2500


def test_several_writes_share_one_transaction(store: Store) -> None:
    run = state.start_run(store, "dev", "a" * 40)

    def record_then_crash() -> None:
        with store.session(write=True) as session:
            state.finish_run(session, run.id, RunResult.SUCCEEDED)
            state.replace_inventory(session, "dev", [item("chat")])
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        record_then_crash()
    assert state.get_run(store, run.id) == run
    assert state.read_inventory(store, "dev") == []
    with store.session(write=True) as session:
        state.finish_run(session, run.id, RunResult.SUCCEEDED)
        state.replace_inventory(session, "dev", [item("chat")])
    assert state.read_inventory(store, "dev") == [item("chat")]


# --------------------------------------------------------------------------- status


def test_spec_and_object_status_round_trip_and_upsert(store: Store) -> None:
    key = SpecKey("ServingEndpoint", "prod", "chat")
    state.put_spec_status(store, state.SpecStatus(key, "a" * 40, "Progressing", updated_at=T0))
    state.put_spec_status(store, state.SpecStatus(SpecKey("Model", "", "m@1.0.0"), "a" * 40,
                                                  "Healthy", updated_at=T0))
    later = T0 + timedelta(minutes=1)
    state.put_spec_status(store, state.SpecStatus(key, "b" * 40, "Degraded", drift=True,
                                                  last_error="CrashLoopBackOff", updated_at=later))
    (got,) = state.list_spec_status(store, environment="prod")
    assert got == state.SpecStatus(key, "b" * 40, "Degraded", True, "CrashLoopBackOff", later)
    assert [s.key.kind for s in state.list_spec_status(store)] == ["Model", "ServingEndpoint"]
    assert [s.key.name for s in state.list_spec_status(store, kind="Model")] == ["m@1.0.0"]

    deploy = ResourceKey("apps", "Deployment", "nlp-prod", "chat")
    service = ResourceKey("", "Service", "nlp-prod", "chat")
    state.put_object_status(store, state.ObjectStatus("prod", service, "Healthy", updated_at=T0))
    state.put_object_status(store, state.ObjectStatus("prod", deploy, "Progressing",
                                                      "1/3 ready", updated_at=T0))
    state.put_object_status(store, state.ObjectStatus("prod", deploy, "Healthy", "3/3 ready",
                                                      drift=True, updated_at=later))
    assert state.list_object_status(store, "prod") == [
        state.ObjectStatus("prod", service, "Healthy", "", False, "", T0),
        state.ObjectStatus("prod", deploy, "Healthy", "3/3 ready", True, "", later),
    ]
    assert state.list_object_status(store, "dev") == []


def test_environment_status_round_trip(store: Store) -> None:
    assert state.get_environment_status(store, "prod") is None
    ready = state.Condition(state.ConditionType.READY, state.ConditionStatus.FALSE,
                            "SourceUnavailable", "git fetch failed", T0)
    stalled = state.Condition(state.ConditionType.STALLED, state.ConditionStatus.TRUE,
                              "SourceUnavailable")
    status = state.EnvironmentStatus(
        "prod", observed_revision="b" * 40, last_applied_revision="a" * 40,
        last_attempted_revision="b" * 40, conditions=(ready, stalled), last_success_at=T0,
        source_state=SourceState.UNAVAILABLE, source_message="timeout", updated_at=T0,
        observed_author="Ada <ada@example.com>", observed_subject="prod: chat 1.3.0")
    state.put_environment_status(store, status)
    got = state.get_environment_status(store, "prod")
    assert got == status
    assert got.observed_author == "Ada <ada@example.com>"
    assert got.condition(state.ConditionType.READY) == ready
    assert got.condition(state.ConditionType.RECONCILING) is None
    healed = state.EnvironmentStatus("prod", "b" * 40, "b" * 40, "b" * 40, (
        state.Condition(state.ConditionType.READY, state.ConditionStatus.TRUE, "Succeeded"),),
        T0 + timedelta(hours=1), SourceState.AVAILABLE, "", T0 + timedelta(hours=1))
    state.put_environment_status(store, healed)
    state.put_environment_status(store, state.EnvironmentStatus("dev", updated_at=T0))
    assert state.list_environment_status(store) == [
        state.EnvironmentStatus("dev", updated_at=T0), healed]


def test_gpu_samples_round_trip(store: Store) -> None:
    samples = [state.GpuSample("prod", "nlp", "chat", 2, r, T0 + timedelta(minutes=5 * r))
               for r in range(1, 5)]
    samples.append(state.GpuSample("prod", "vision", "ocr", 1, 1, T0))
    samples.append(state.GpuSample("dev", "nlp", "chat", 1, 1, T0))
    assert state.add_gpu_samples(store, samples) == 6
    assert state.add_gpu_samples(store, []) == 0
    nlp_prod = state.gpu_samples(store, environment="prod", team="nlp")
    assert nlp_prod == samples[:4]
    window = state.gpu_samples(store, environment="prod", since=T0 + timedelta(minutes=10),
                               until=T0 + timedelta(minutes=20))
    assert [(s.team, s.replicas) for s in window] == [("nlp", 2), ("nlp", 3)]
    assert len(state.gpu_samples(store)) == 6


def test_timestamps_are_utc_and_naive_ones_are_refused(store: Store) -> None:
    eastern = datetime(2025, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5)))
    run = state.start_run(store, "dev", "a" * 40, started_at=eastern)
    got = state.get_run(store, run.id)
    assert got is not None
    assert got.started_at == eastern
    assert got.started_at.tzinfo is UTC
    with pytest.raises(exc.StatementError, match="naive datetime"):
        state.start_run(store, "dev", "a" * 40, started_at=datetime(2025, 3, 1, 7, 0))


def test_raw_queries_see_the_same_rows_on_both_backends(store: Store) -> None:
    state.replace_inventory(store, "dev", [item("chat")])
    with store.connection() as conn:
        count = conn.execute(text("SELECT count(*) FROM inventory WHERE environment = 'dev'"))
        assert count.scalar() == 1


def test_postgres_fixture_databases_are_dropped(
        make_postgres_database: Callable[[], AbstractContextManager[str]]) -> None:
    with make_postgres_database() as url:
        with Store(url) as store:
            store.migrate()
        name = url.rsplit("/", 1)[1]
    with Store(url.rsplit("/", 1)[0] + "/test") as admin, admin.connection() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        assert exists.first() is None


def test_a_nul_character_in_a_lookup_is_not_found_never_a_server_error(store: Store) -> None:
    """PostgreSQL refuses U+0000 in text parameters; SQLite stores it. Either way a name
    holding one matches nothing: a NotFound (404), not a driver error (500)."""
    from llmops.engine.errors import NotFound
    from llmops.engine.service import lookup
    from llmops.engine.types import Kind

    with pytest.raises(NotFound):
        lookup.one(store, Kind.POLICY, "gov\x00ernance")
    with pytest.raises(NotFound):
        lookup.one(store, Kind.MODEL, "\x00@1.0.0")
