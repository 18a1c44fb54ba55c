"""The store's connection to its database: engines, transactions, migrations, readiness.

Role: ``Store`` opens one SQLAlchemy engine for a URL (a SQLite file by
default, PostgreSQL through psycopg 3 when the URL says so), upgrades the
schema with the Alembic scripts shipped in this package, answers readiness
probes and hands out short transactions. Input: a database URL, usually
``Settings.effective_database_url``. Output: ``Session`` objects inside
``Store.session()`` / ``Store.transaction()``. Callers: ``store.state`` and
``store.audit`` (the record stage; it keys the chain with ``Store.audit_seal``,
which the database never holds), the daemon and API at start-up
(``migrate`` then ``ping``), and ``llmops audit verify``.

Fencing: ``next_fence`` gives each acquisition of a leader lease the next
epoch of that lease (table ``leader_epoch``); inside ``fenced(fence)`` every
write transaction of the calling thread first checks that the epoch is still
the newest and raises ``FencedOut`` (writing nothing) once a newer leader took
over. The check runs inside the write transaction: SQLite's ``BEGIN
IMMEDIATE`` serialises it with the next acquisition, PostgreSQL's ``FOR
SHARE`` row lock makes that acquisition wait for a write in flight, so no
write of an older epoch commits after a newer epoch does.

Every failure that means "the store cannot be reached or written" (refused
connection, unopenable or read-only file, lock timeout) surfaces as
``StoreUnavailable``, whose message never contains the URL's password.

SQLite: WAL, foreign keys and a busy timeout on every connection;
SQLAlchemy (not the ``sqlite3`` module) emits ``BEGIN``, and write
transactions start with ``BEGIN IMMEDIATE`` so two writers queue instead of
failing or interleaving. PostgreSQL: ``migrate`` holds a session advisory
lock, so replicas starting together run the upgrade once; no wait is
unbounded (``_postgres_engine``: connect, statement, lock and idle-transaction
timeouts, keep-alives, a ping on checkout and a client-side reply deadline in
``DeadlineConnection``), so a hung server is ``StoreUnavailable`` in seconds.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from psycopg import errors as pg_errors
from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url, pool, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from llmops.engine.errors import Conflict, LlmopsError, NotFound, Unavailable
from llmops.engine.store import seal
from llmops.engine.store.models import LeaderEpochRow

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

# Advisory-lock keys (PostgreSQL bigint); "llmops" in ASCII, plus a stream number.
MIGRATE_LOCK_KEY = 0x6C6C6D6F7073_01
AUDIT_LOCK_KEY = 0x6C6C6D6F7073_02

_IMMEDIATE = "llmops_sqlite_immediate"

REPLY_GRACE_SECONDS = 5.0
"""How much longer than ``statement_timeout`` the client waits for an answer: the
server's own timeout fires first for a slow statement; this catches a hung server."""
TCP_USER_TIMEOUT_MS = 10_000
"""Data the peer does not acknowledge for this long drops the connection (libpq)."""
MIGRATE_TIMEOUT_SECONDS = 600
"""Statement, lock and reply bound of ``migrate`` (DDL, waiting for another replica's)."""


class DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection that waits at most ``reply_timeout`` for each server reply.

    A server that accepts and then never answers (hung, stopped, a half-open proxy)
    would otherwise block a pooled connection forever: keep-alives and
    ``tcp_user_timeout`` see nothing wrong while its kernel still acknowledges. On
    expiry the connection is closed (its state is unknown) and ``OperationalError``
    raised, which the store reports as ``StoreUnavailable``.
    """

    reply_timeout: float | None = None
    saved_reply_timeout: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        try:
            return super().wait(gen, interval, timeout if timeout is not None
                                else self.reply_timeout)
        except pg_errors._WaitTimeout:
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"no answer from the server within {self.reply_timeout or timeout:g} s; "
                "connection closed") from None


class StoreError(LlmopsError):
    """The state store failed; carries the (password-free) URL it is about."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        self.message = message
        super().__init__(f"store {url}: {message}")


class StoreUnavailable(StoreError, Unavailable):
    """The store cannot be reached or written right now (retry later; act on nothing)."""


class FencedOut(StoreError, Conflict):
    """A newer leader took the lease: a write carrying an older fencing token was refused
    (its transaction wrote nothing)."""


@dataclass(frozen=True, slots=True)
class Fence:
    """A fencing token: the ``epoch`` one acquisition of lease ``name`` took."""

    name: str
    epoch: int


_FENCE: ContextVar[tuple[Store, Fence] | None] = ContextVar("llmops_fence", default=None)
"""The fence of the calling thread's writes (set by ``Store.fenced``)."""


def _dumps(value: Any) -> str:
    """JSON columns are written by orjson and read back by ``orjson.loads`` (the engines'
    ``json_deserializer``; several times faster than the ``json`` module on every row the
    API reads): orjson refuses to write integers past 64 bits and non-finite floats, the
    only values its reader would not give back exactly."""
    return orjson.dumps(value).decode()


def normalise_url(url: str | URL) -> URL:
    """Parse ``url``; plain ``postgresql://`` / ``postgres://`` get the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class Store:
    """One database: an engine plus the transactions, migrations and probes on it."""

    def __init__(self, url: str | URL, *, connect_timeout: float = 5.0,
                 statement_timeout: float = 30.0, lock_timeout: float = 10.0,
                 idle_in_transaction_timeout: float = 60.0,
                 busy_timeout: float = 30.0, pool_size: int = 5) -> None:
        self.url = normalise_url(url)
        self.display_url = self.url.render_as_string(hide_password=True)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = self._sqlite_engine(busy_timeout)
        elif self.dialect == "postgresql":
            self.engine = self._postgres_engine(
                pool_size, connect_timeout=connect_timeout, statement_timeout=statement_timeout,
                lock_timeout=lock_timeout, idle_timeout=idle_in_transaction_timeout)
        else:
            raise StoreError(self.display_url,
                             f"unsupported database {self.dialect!r} (use sqlite or postgresql)")
        self._write_engine = self.engine.execution_options(**{_IMMEDIATE: True})
        self.audit_seal: seal.Seal | None = None
        """The audit chain's key and anchors (``compose`` sets it from settings); None:
        the chain is an unkeyed SHA-256 chain, as before keys existed."""

    # ------------------------------------------------------------------ engines

    def _postgres_engine(self, pool_size: int, *, connect_timeout: float,
                         statement_timeout: float, lock_timeout: float,
                         idle_timeout: float) -> Engine:
        """psycopg 3 with every wait bounded: start-up (``connect_timeout``), statements and
        lock waits (server side), stuck transactions (ended by the server), a dead peer
        (keep-alives, ``tcp_user_timeout``), a pooled connection whose server stopped
        answering (a ping on checkout within the connect timeout) and any reply on an open
        connection (``reply_timeout``, client side: the connection is closed)."""
        options = " ".join(f"-c {name}={round(seconds * 1000)}" for name, seconds in (
            ("statement_timeout", statement_timeout), ("lock_timeout", lock_timeout),
            ("idle_in_transaction_session_timeout", idle_timeout)))
        if self.url.query.get("options"):  # the URL's own options come first
            options = f"{self.url.query['options']} {options}"
        engine = create_engine(
            self.url, pool_size=pool_size, max_overflow=pool_size,
            pool_timeout=connect_timeout + statement_timeout, json_serializer=_dumps,
            json_deserializer=orjson.loads,
            connect_args={"connect_timeout": max(2, round(connect_timeout)),
                          "application_name": "llmops", "options": options,
                          "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                          "keepalives_count": 3, "tcp_user_timeout": TCP_USER_TIMEOUT_MS})
        reply_timeout = statement_timeout + REPLY_GRACE_SECONDS
        ping_timeout = float(max(2, round(connect_timeout)))

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            conn = DeadlineConnection.connect(*cargs, **cparams)
            conn.reply_timeout = reply_timeout
            return conn

        @event.listens_for(engine, "checkout")
        def _ping(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            # Pre-ping with a short deadline: a pooled connection to a server that
            # stopped answering costs ``ping_timeout``, not a whole reply timeout, and
            # the pool replaces it (DisconnectionError) with a new connection.
            saved, dbapi_conn.reply_timeout = dbapi_conn.reply_timeout, ping_timeout
            try:
                engine.dialect.do_ping(dbapi_conn)
            except psycopg.Error as err:
                raise exc.DisconnectionError(_first_line(str(err))) from err
            finally:
                dbapi_conn.reply_timeout = saved

        return engine

    def _sqlite_engine(self, busy_timeout: float) -> Engine:
        database = self.url.database or ""
        memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if not memory:
            # Create the parent of the default ``.llmops/llmops.db``; when that is
            # impossible the first connection fails and reports it as unavailable.
            with contextlib.suppress(OSError):
                Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        engine = create_engine(
            self.url, json_serializer=_dumps, json_deserializer=orjson.loads,
            connect_args={"timeout": busy_timeout, "check_same_thread": False},
            poolclass=pool.StaticPool if memory else pool.QueuePool)
        busy_ms = int(busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN, see _on_begin
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cursor.execute("PRAGMA foreign_keys = ON")
                if not memory:
                    _enable_wal(cursor, busy_timeout)
                    cursor.execute("PRAGMA synchronous = NORMAL")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get(_IMMEDIATE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    # ------------------------------------------------------------------ errors

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Turn "cannot reach or write the store" driver errors into ``StoreUnavailable``."""
        try:
            yield
        except (exc.OperationalError, exc.InterfaceError) as err:
            raise StoreUnavailable(self.display_url, _reason(err)) from err
        except exc.DBAPIError as err:
            if err.connection_invalidated:
                raise StoreUnavailable(self.display_url, _reason(err)) from err
            if isinstance(err, exc.DataError) and "NUL (0x00)" in str(err.orig):
                # PostgreSQL text cannot hold U+0000, so nothing stored has one: whatever
                # the request looked for or named does not exist (never a server error).
                raise NotFound("nothing matches a text value holding a NUL character "
                               "(U+0000): no stored name or value can hold one") from err
            raise
        except (exc.TimeoutError, exc.DisconnectionError) as err:
            raise StoreUnavailable(self.display_url, str(err).splitlines()[0]) from err

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back when it raises.

        ``write=True`` starts it as a writer (``BEGIN IMMEDIATE`` on SQLite).
        """
        with self.guard():
            engine = self._write_engine if write else self.engine
            with Session(engine, expire_on_commit=False, autoflush=False) as session:
                with session.begin():
                    if write:
                        self._check_fence(session.connection())
                    yield session

    @contextlib.contextmanager
    def connection(self, *, write: bool = False) -> Iterator[Connection]:
        """A Core connection in one transaction (for raw SQL and bulk reads)."""
        with self.guard():
            engine = self._write_engine if write else self.engine
            with engine.begin() as conn:
                if write:
                    self._check_fence(conn)
                yield conn

    # ------------------------------------------------------------------ fencing

    def next_fence(self, name: str) -> Fence:
        """The fencing token of a new acquisition of lease ``name``: its epoch incremented
        (1 the first time) in one transaction, which waits for a write of an older epoch
        in flight. Call it after winning the lease, before writing anything."""
        insert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)
        now = datetime.now(UTC)
        statement = insert(LeaderEpochRow).values(
            name=name, epoch=1, acquired_at=now).on_conflict_do_update(
            index_elements=[LeaderEpochRow.name],
            set_={"epoch": LeaderEpochRow.epoch + 1, "acquired_at": now},
        ).returning(LeaderEpochRow.epoch)
        with self.guard(), self._write_engine.begin() as conn:
            return Fence(name, int(conn.execute(statement).scalar_one()))

    @contextlib.contextmanager
    def fenced(self, fence: Fence) -> Iterator[None]:
        """Inside the block, every write transaction of this thread on this store carries
        ``fence``: it raises ``FencedOut`` before writing once a newer epoch exists."""
        token = _FENCE.set((self, fence))
        try:
            yield
        finally:
            _FENCE.reset(token)

    def _check_fence(self, conn: Connection) -> None:
        held = _FENCE.get()
        if held is None or held[0] is not self:
            return
        fence = held[1]
        query = select(LeaderEpochRow.epoch).where(LeaderEpochRow.name == fence.name)
        if self.dialect == "postgresql":
            query = query.with_for_update(read=True)
        current = conn.execute(query).scalar_one_or_none()
        if current != fence.epoch:
            raise FencedOut(self.display_url, (
                f"leader lease {fence.name!r}: epoch {fence.epoch} is stale (the store is "
                f"at {current}): a newer leader took over; nothing written"))

    # ------------------------------------------------------------------ lifecycle

    def ping(self) -> None:
        """Readiness: a round trip to the database, or ``StoreUnavailable``."""
        with self.guard(), self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def migrate(self) -> str:
        """Upgrade the schema to head (a no-op when current); returns the head revision.

        Safe at every start and from several processes at once: PostgreSQL
        serialises it with an advisory lock, SQLite with ``BEGIN IMMEDIATE``.
        """
        config = alembic_config()
        with self.guard(), self._write_engine.connect() as conn:
            if self.dialect == "postgresql":
                # Longer bounds for this session only: a migration (or waiting for
                # another replica's) may take longer than any single statement should.
                _migration_limits(conn, True)
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATE_LOCK_KEY})")
                conn.commit()
            try:
                # One transaction around every step: Alembic sees it as external
                # and runs inside it, so DDL and the version row commit together.
                with conn.begin():
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
            finally:
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATE_LOCK_KEY})")
                    conn.commit()
                    _migration_limits(conn, False)
        revision = self.schema_revision()
        assert revision is not None, "alembic upgrade left no version"
        return revision

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at, or ``None`` before the first migrate."""
        with self.guard(), self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"


def _migration_limits(conn: Connection, on: bool) -> None:
    """Set (``on``) or restore this session's statement, lock and reply timeouts for a
    migration: ``MIGRATE_TIMEOUT_SECONDS`` each, so even a hung server is given up on."""
    raw = conn.connection.dbapi_connection
    limit = f"{MIGRATE_TIMEOUT_SECONDS * 1000}"
    for name in ("statement_timeout", "lock_timeout"):
        conn.exec_driver_sql(f"SET {name} = {limit}" if on else f"RESET {name}")
    conn.commit()
    if isinstance(raw, DeadlineConnection):
        raw.reply_timeout, raw.saved_reply_timeout = (
            (MIGRATE_TIMEOUT_SECONDS + REPLY_GRACE_SECONDS, raw.reply_timeout) if on
            else (raw.saved_reply_timeout, None))


def _enable_wal(cursor: Any, busy_timeout: float) -> None:
    """Switch a SQLite file to WAL (persistent, so usually already done).

    The switch needs the file to itself and fails at once, without waiting
    on the busy handler, while another connection is in a transaction: retry
    until ``busy_timeout``, then let the error say the store is busy.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.005
    while True:
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged scripts (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    # New scripts start with a letter, so mypy can name them as modules.
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    return config


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _reason(err: exc.DBAPIError) -> str:
    """The driver's own first message line (never the SQL statement or its parameters)."""
    text = str(err.orig).strip() if err.orig is not None else type(err).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err.orig).__name__


@contextlib.contextmanager
def transaction(db: Store | Session, *, write: bool = False) -> Iterator[Session]:
    """A session for ``db``: its own transaction for a ``Store``, the caller's for a ``Session``.

    Functions of ``store.state`` accept either, so the recorder can write a
    run, its inventory and status in one transaction, or each on its own.
    """
    if isinstance(db, Session):
        yield db
    else:
        with db.session(write=write) as session:
            yield session
