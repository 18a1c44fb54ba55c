"""The spec catalog: every spec of the latest validated revision, as the API reads it.

Role: keep one row per spec (its stable ``SpecKey.id`` UUID, kind,
environment, name, the revision and file it came from, and the spec itself
as JSON) so that the API answers catalog, serving, prompt, training,
governance and RBAC questions from the store, never from git. Input: a
revision SHA and its validated ``SpecSet`` (``record``); filters (the query
helpers). Output: frozen ``CatalogEntry`` values, and the RBAC role table
(``roles``) merged from the ``Policy`` specs, cached per store and catalog
revision (``role_table``: the API checks a permission on every request).
Callers: the reconciler's load step (``record``, after a revision validates)
and the API's routes and authorisation dependency (the reads).

``record`` replaces the whole catalog in one transaction, and does nothing
when the catalog already holds that revision, so reconciling the same
revision again writes nothing. Given the revision the catalog holds and its
``SpecSet`` (the reconciler's previous revision), it writes only the rows of
specs added, removed or changed, and the new revision on every row in one
statement. Writers are serialised (an advisory
transaction lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so two
processes recording at once cannot interleave. Models are versioned: their
``name`` is ``name@version``, as in their ``SpecKey``.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from llmops.engine.spec import schema
from llmops.engine.spec.validate import SourcedSpec, SpecSet
from llmops.engine.store import db, state
from llmops.engine.store.models import CatalogEntryRow, SpecStatusRow
from llmops.engine.types import Kind, SpecKey

Db = db.Store | Session

# Advisory-lock key of catalog writers (see ``db.MIGRATE_LOCK_KEY``).
CATALOG_LOCK_KEY = 0x6C6C6D6F7073_03
_BATCH = 1000
UNKNOWN_HEALTH = "Unknown"
"""The health of a spec no reconcile has assessed (no status row)."""
MODEL_REFS = {Kind.SERVING_ENDPOINT.value: "modelRef", Kind.TRAINING_JOB.value: "baseModelRef"}


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One spec as recorded: identity, provenance and its plain JSON data."""

    id: str
    kind: str
    environment: str
    name: str
    revision: str
    file: str
    spec: dict[str, Any]
    updated_at: datetime

    @property
    def key(self) -> SpecKey:
        return SpecKey(self.kind, self.environment, self.name)

    @property
    def base_name(self) -> str:
        """``metadata.name`` (a model's name without its ``@version``)."""
        return self.name.split("@", 1)[0]

    @property
    def body(self) -> dict[str, Any]:
        """The spec's ``spec`` section."""
        body = self.spec.get("spec")
        return body if isinstance(body, dict) else {}

    @property
    def labels(self) -> dict[str, str]:
        meta = self.spec.get("metadata")
        labels = meta.get("labels") if isinstance(meta, dict) else None
        return dict(labels) if isinstance(labels, dict) else {}


def _entry(row: Any) -> CatalogEntry:
    """An entry from a row of ``_ENTRY_COLUMNS`` (or a ``CatalogEntryRow``)."""
    return CatalogEntry(id=row.id, kind=row.kind, environment=row.environment, name=row.name,
                        revision=row.revision, file=row.file, spec=dict(row.spec),
                        updated_at=row.updated_at)


# The reads below are Core statements built once per shape of filter, with bound
# parameters, run on the session's connection: building a statement and loading ORM
# objects cost more CPU than the query itself (the API runs them on every request).
_CATALOG = CatalogEntryRow.__table__.c
_STATUS = SpecStatusRow.__table__.c
_ENTRY_COLUMNS = (_CATALOG.id, _CATALOG.kind, _CATALOG.environment, _CATALOG.name,
                  _CATALOG.revision, _CATALOG.file, _CATALOG.spec, _CATALOG.updated_at)
_STATUS_COLUMNS = (_STATUS.revision.label("s_revision"), _STATUS.health.label("s_health"),
                   _STATUS.drift.label("s_drift"), _STATUS.last_error.label("s_last_error"),
                   _STATUS.updated_at.label("s_updated_at"))
_LIKE_ESCAPE = "/"


def _like_prefix(prefix: str) -> str:
    """``prefix`` as a LIKE pattern matching every string that starts with it."""
    escaped = (prefix.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2).replace("%", "/%")
               .replace("_", "/_"))
    return f"{escaped}%"


def _rows(session: Session, stmt: Select[Any], params: Mapping[str, Any]) -> list[Any]:
    """Every row of ``stmt`` run with ``params`` on the session's connection, in one fetch."""
    return list(session.connection().execute(stmt, dict(params)).all())


# --------------------------------------------------------------------------- write


def model_of(kind: str, spec: Mapping[str, Any]) -> str:
    """``name@version`` of the model an endpoint serves or a training job starts from
    (the ``model`` column, indexed with ``kind``), "" for other kinds."""
    body = spec.get("spec")
    ref = body.get(MODEL_REFS.get(kind, "")) if isinstance(body, dict) else None
    if not isinstance(ref, dict) or not ref.get("name"):
        return ""
    return f"{ref.get('name')}@{ref.get('version', '')}"[:253]


_REVISION = select(_CATALOG.revision).limit(1)


def _held_revision(session: Session) -> str | None:
    return session.scalars(select(CatalogEntryRow.revision).limit(1)).first()


def record(store: db.Store, revision: str, spec_set: SpecSet, *,
           now: datetime | None = None, previous: tuple[str, SpecSet] | None = None) -> bool:
    """Make ``spec_set`` at ``revision`` the whole catalog, atomically.

    Returns ``False`` (and writes nothing) when the catalog already holds
    ``revision``; ``True`` when it was replaced. ``previous`` (a revision and
    its ``SpecSet``): when the catalog holds that revision, only the difference
    is written. Raises ``StoreUnavailable`` when the store cannot be written
    (the previous catalog then stays).
    """
    at = now or datetime.now(UTC)
    with store.session(write=True) as session:
        if store.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": CATALOG_LOCK_KEY})
        held = _held_revision(session)
        if held == revision:
            return False
        if previous is not None and held is not None and held == previous[0]:
            _write_difference(session, revision, previous[1], spec_set, at)
            return True
        session.execute(delete(CatalogEntryRow))
        _insert(session, [_row(item, revision, at) for item in spec_set.items])
    return True


def _row(item: SourcedSpec, revision: str, at: datetime) -> dict[str, Any]:
    key = item.key
    spec = item.spec.model_dump(mode="json")
    return {"id": str(key.id), "kind": key.kind, "environment": key.environment,
            "name": key.name, "revision": revision, "file": item.document.file,
            "spec": spec, "updated_at": at, "model": model_of(key.kind, spec)}


def _insert(session: Session, rows: list[dict[str, Any]]) -> None:
    for at in range(0, len(rows), _BATCH):
        session.execute(insert(CatalogEntryRow), rows[at:at + _BATCH])


def _write_difference(session: Session, revision: str, old: SpecSet, new: SpecSet,
                      at: datetime) -> None:
    """Turn the catalog of ``old`` into that of ``new`` at ``revision``: rows of removed
    specs deleted, of changed ones (another spec object, as the validate stage hands an
    unchanged file's spec out again, or another file) rewritten, of new ones added."""
    before = {item.key: item for item in old.items}
    keys = {item.key for item in new.items}
    gone = [str(key.id) for key in before if key not in keys]
    if gone:
        session.execute(delete(CatalogEntryRow).where(CatalogEntryRow.id.in_(gone)))
    session.execute(update(CatalogEntryRow).values(revision=revision, updated_at=at))
    changed, added = [], []
    for item in new.items:
        prior = before.get(item.key)
        if prior is None:
            added.append(_row(item, revision, at))
        elif prior.document.file != item.document.file or not (
                prior.spec is item.spec or prior.spec == item.spec):
            changed.append(_row(item, revision, at))
    if changed:  # by primary key (the spec's id)
        session.execute(update(CatalogEntryRow), changed)
    _insert(session, added)


# --------------------------------------------------------------------------- read


def revision(database: Db) -> str | None:
    """The revision the catalog holds, or ``None`` while it is empty."""
    with db.transaction(database) as session:
        return _held_revision(session)


def _field_matches(entry: CatalogEntry, wanted: Mapping[str, str]) -> bool:
    body = entry.body
    return all(str(body.get(name, "")) == value for name, value in wanted.items())


@functools.lru_cache(maxsize=64)
def _entries_statement(kind: bool, environment: bool, name: str | None,
                       prefix: bool) -> Select[Any]:
    """The ``list_entries`` query for one shape of filter; ``name`` "exact" (by the
    (kind, name) index), "versions" (a model's every ``name@version``) or None."""
    c = _CATALOG
    stmt = select(*_ENTRY_COLUMNS).order_by(c.kind, c.environment, c.name)
    if kind:
        stmt = stmt.where(c.kind == bindparam("kind"))
    if environment:
        stmt = stmt.where(c.environment == bindparam("environment"))
    if name == "exact":
        stmt = stmt.where(c.name == bindparam("name"))
    elif name == "versions":  # LIKE: no index in every locale
        stmt = stmt.where(or_(c.name == bindparam("name"),
                              c.name.like(bindparam("versions"), escape=_LIKE_ESCAPE)))
    if prefix:
        stmt = stmt.where(c.name.like(bindparam("prefix"), escape=_LIKE_ESCAPE))
    return stmt


def list_entries(database: Db, *, kind: str | None = None, environment: str | None = None,
                 name: str | None = None, name_prefix: str | None = None,
                 fields: Mapping[str, str | None] | None = None,
                 where: Callable[[CatalogEntry], bool] | None = None) -> list[CatalogEntry]:
    """Entries sorted by (kind, environment, name), filtered by every argument given.

    ``name`` matches the base name (a model's every version); ``name_prefix``
    the start of it; ``fields`` top-level fields of the ``spec`` section
    (``{"ownerTeam": "nlp"}``; ``None`` values are ignored); ``where`` any
    further predicate.
    """
    shape = None if name is None else "exact" if kind not in (None, Kind.MODEL) else "versions"
    stmt = _entries_statement(kind is not None, environment is not None, shape,
                              bool(name_prefix))
    params = {"kind": kind, "environment": environment, "name": name,
              "versions": _like_prefix(f"{name}@") if name is not None else None,
              "prefix": _like_prefix(name_prefix) if name_prefix else None}
    with db.transaction(database) as session:
        entries = [_entry(row) for row in _rows(session, stmt, params)]
    wanted = {k: v for k, v in (fields or {}).items() if v is not None}
    return [e for e in entries
            if (name is None or e.base_name == name)
            and (not wanted or _field_matches(e, wanted))
            and (where is None or where(e))]


@dataclass(frozen=True, slots=True)
class StatusPage:
    """One page of entries, each with its recorded status (``None``: never assessed), and
    how many entries match over every page."""

    items: list[tuple[CatalogEntry, state.SpecStatus | None]]
    total: int


@functools.lru_cache(maxsize=16)
def _status_statement(environment: bool, models: bool, health: bool) -> Select[Any]:
    """The ``status_page`` query for one shape of filter: entries of ``:kind`` outer-joined
    to their status, with the number of matches over every page as the last column."""
    c, s = _CATALOG, _STATUS
    stmt = (select(*_ENTRY_COLUMNS, *_STATUS_COLUMNS, func.count().over().label("total"))
            .select_from(CatalogEntryRow.__table__.outerjoin(
                SpecStatusRow.__table__, and_(c.kind == s.kind, c.environment == s.environment,
                                              c.name == s.name)))
            .where(c.kind == bindparam("kind")))
    if environment:
        stmt = stmt.where(c.environment == bindparam("environment"))
    if models:
        stmt = stmt.where(c.model.in_(bindparam("models", expanding=True)))
    if health:
        stmt = stmt.where(func.coalesce(s.health, UNKNOWN_HEALTH) == bindparam("health"))
    return (stmt.order_by(c.environment, c.name)
            .limit(bindparam("limit")).offset(bindparam("offset")))


def _status_of(row: Any) -> state.SpecStatus | None:
    """The status columns of a ``status_page`` row; None when the outer join found none."""
    if row.s_health is None:
        return None
    return state.SpecStatus(SpecKey(row.kind, row.environment, row.name), row.s_revision,
                            row.s_health, row.s_drift, row.s_last_error, row.s_updated_at)


def status_page(database: Db, *, kind: str, limit: int, offset: int,
                environment: str | None = None, models: Collection[str] | None = None,
                health: str | None = None) -> StatusPage:
    """Entries of ``kind`` matching every filter given, by (environment, name), from
    ``offset``: filtered, counted and paged in SQL (indexes on ``(kind, environment,
    name)``, ``(kind, model)``, ``spec_status (kind, health)``). ``models`` are
    ``name@version`` values of the ``model`` column; ``health`` a spec health, where a
    spec with no status row is ``Unknown``."""
    if models is not None and not models:
        return StatusPage([], 0)  # no model matches: nothing to ask the store
    stmt = _status_statement(environment is not None, models is not None, health is not None)
    params = {"kind": kind, "environment": environment, "health": health, "limit": limit,
              "offset": offset, "models": sorted(models) if models is not None else None}
    with db.transaction(database) as session:
        # the total rides along each row (a window count); only a page past the end asks
        rows = _rows(session, stmt, params)
        total = rows[0].total if rows else _rows(session, select(func.count()).select_from(
            stmt.limit(None).offset(None).subquery()), params)[0][0]
        items = [(_entry(row), _status_of(row)) for row in rows]
    return StatusPage(items, int(total))


_BY_ID = select(*_ENTRY_COLUMNS).where(_CATALOG.id == bindparam("id"))


def get(database: Db, entry_id: str) -> CatalogEntry | None:
    """The entry with this UUID (any spelling of it), or ``None``."""
    with db.transaction(database) as session:
        rows = _rows(session, _BY_ID, {"id": entry_id.lower()})
        return _entry(rows[0]) if rows else None


def get_key(database: Db, key: SpecKey) -> CatalogEntry | None:
    return get(database, str(key.id))


RoleTable = Mapping[str, frozenset[str]]
"""Role -> the permissions it grants."""


def roles(database: Db) -> dict[str, frozenset[str]]:
    """Role -> permissions, merged from the ``rbac`` of every recorded ``Policy``."""
    out: dict[str, set[str]] = {}
    for entry in list_entries(database, kind=Kind.POLICY):
        rbac = entry.body.get("rbac")
        table = rbac.get("roles") if isinstance(rbac, dict) else None
        if not isinstance(table, dict):
            continue
        for role, permissions in table.items():
            if isinstance(permissions, list):
                out.setdefault(str(role), set()).update(str(p) for p in permissions)
    return {role: frozenset(permissions) for role, permissions in out.items()}


_ROLE_TABLES: weakref.WeakKeyDictionary[db.Store, tuple[str | None, RoleTable]] = (
    weakref.WeakKeyDictionary())
_ROLE_TABLES_LOCK = threading.Lock()


def role_table(database: Db) -> RoleTable:
    """``roles``, from the store's cache while the catalog still holds the revision it was
    read at (one single-row read of the revision per call instead of every Policy).

    ``record`` replaces the whole catalog, revision included, so an unchanged revision
    means unchanged Policies; the revision is read from the store on every call, so a
    revision recorded by any process (the daemon) is seen by the next call. Within a
    ``Session`` (the caller's transaction) the table is read as it is there.
    """
    if not isinstance(database, db.Store):
        return roles(database)
    with database.connection() as conn:  # Core: half the CPU of an ORM session's read
        probed = conn.execute(_REVISION).scalar()
    held = _ROLE_TABLES.get(database)
    if held is not None and held[0] == probed:
        return held[1]
    with database.session() as session:
        revision = _held_revision(session)
        table = roles(session)  # same transaction: the table of exactly this revision
    with _ROLE_TABLES_LOCK:
        _ROLE_TABLES[database] = (revision, table)
    return table


def permissions_of(database: Db, role_names: Iterable[str]) -> frozenset[str]:
    """Every permission the given roles grant (``*`` stays ``*``)."""
    table = role_table(database)
    granted: set[str] = set()
    for role in role_names:
        granted |= table.get(role, frozenset())
    return frozenset(granted)


def allows(granted: frozenset[str], permission: str) -> bool:
    return schema.Permission.ALL.value in granted or permission in granted
