"""Engines, sessions and schema migrations.

SQLite is set up for one scheduler and a few CLI commands writing at once: WAL (readers never
block the writer), a busy timeout, foreign keys on, and write transactions that take the write
lock up front (`BEGIN IMMEDIATE`), so two writers queue instead of one failing with
"database is locked" when it tries to upgrade a read lock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from storage.sqlite_tuning import memory_statistics_off
from tracker.errors import DatabaseError, DatabaseUnavailable

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
_WRITE = "tracker_write"


def make_engine(url: str, *, sqlite_busy_timeout: float = 60.0, **kwargs: Any) -> Engine:
    """An engine for `url`, with the SQLite pragmas and transaction handling described above."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory_statistics_off()  # before the first connection: see storage/sqlite_tuning.py
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": sqlite_busy_timeout}, **kwargs)
        _configure_sqlite(engine, sqlite_busy_timeout)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver we ship
    return create_engine(parsed, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@dataclass
class SchemaState:
    current: str | None
    head: str

    @property
    def empty(self) -> bool:
        return self.current is None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


class Database:
    """One database: a read session factory and a write one (SQLite: write lock taken at BEGIN)."""

    def __init__(self, url: str, *, sqlite_busy_timeout: float = 60.0, **engine_kwargs: Any) -> None:
        self.url = url
        self.sqlite_busy_timeout = sqlite_busy_timeout
        self.engine = make_engine(url, sqlite_busy_timeout=sqlite_busy_timeout, **engine_kwargs)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return self.display(self.url)

    @staticmethod
    def display(url: str) -> str:
        """`url` with any password hidden, for messages."""
        return make_url(url).render_as_string(hide_password=True)

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; rolled back at the end. Raises DatabaseUnavailable (not a
        driver error) when the database is locked, unreachable, full or read-only."""
        with self.translated(), self._read() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error (DatabaseUnavailable as
        in `read`)."""
        with self.translated(), self._write() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """Turn a driver error that means 'the database cannot be used right now' into
        DatabaseUnavailable: one line naming the database and what to do, without the SQL or
        its parameters (they may hold other people's data). Other errors pass unchanged."""
        try:
            yield
        except (DBAPIError, PoolTimeout) as exc:
            problem = unavailable(exc, self.display_url, self.sqlite_busy_timeout)
            if problem is None:
                raise
            raise problem from exc

    def dispose(self) -> None:
        self.engine.dispose()

    # -- migrations ----------------------------------------------------------------------------

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def schema_state(self) -> SchemaState:
        head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        assert head is not None
        try:
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        except OperationalError as exc:
            problem = unavailable(exc, self.display_url, self.sqlite_busy_timeout)
            raise problem or DatabaseError(f"cannot open database {self.display_url}: {_short(exc)}") from None
        return SchemaState(current, head)

    def upgrade(self, revision: str = "head") -> SchemaState:
        """Apply migrations up to `revision`, serialised against other processes doing the same."""
        return self._migrate(revision, auto_upgrade=True, check=False)

    def ensure_schema(self, auto_upgrade: bool = True) -> SchemaState:
        """Make sure the schema matches the code: create or upgrade it, or refuse clearly.

        The fast path reads the version without a lock; anything else is decided again under
        the migration lock, because another process may be creating the schema right now.
        """
        state = self.schema_state()
        if state.up_to_date:
            return state
        return self._migrate("head", auto_upgrade=auto_upgrade, check=True)

    def _migrate(self, revision: str, *, auto_upgrade: bool, check: bool) -> SchemaState:
        cfg = self.alembic_config()
        script = ScriptDirectory.from_config(cfg)
        head = script.get_current_head()
        try:
            with self._write_engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(7413001)"))
                if check:
                    current = MigrationContext.configure(conn).get_current_revision()
                    if current == head:
                        return SchemaState(current, head)
                    self._check_upgradable(conn, script, current, head, auto_upgrade)
                    log.info("upgrading database schema %s -> %s", current or "(empty)", head)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except SQLAlchemyError as exc:
            problem = unavailable(exc, self.display_url, self.sqlite_busy_timeout)
            raise problem or DatabaseError(f"migrating {self.display_url} failed: {_short(exc)}") from None
        return self.schema_state()

    def _check_upgradable(
        self, conn: Connection, script: ScriptDirectory, current: str | None, head: str | None,
        auto_upgrade: bool,
    ) -> None:
        known = {rev.revision for rev in script.walk_revisions()}
        if current is not None and current not in known:
            raise DatabaseError(
                f"database {self.display_url} has schema version {current}, which this "
                "version of the tracker does not know (it is newer): upgrade the tracker"
            )
        if current is None and self._has_tracker_tables(conn):
            raise DatabaseError(
                f"database {self.display_url} has tables but no tracker schema version; "
                "point the tracker at an empty database or its own"
            )
        if not auto_upgrade and current is not None:
            raise DatabaseError(
                f"database schema is at {current}, this tracker needs {head}: "
                "run `tracker db upgrade`"
            )

    @staticmethod
    def _has_tracker_tables(conn: Connection) -> bool:
        names = set(inspect(conn).get_table_names())
        from storage.models import Base

        return bool(names & set(Base.metadata.tables))


_PG_UNREACHABLE = ("08", "57P01", "57P02", "57P03")  # connection exceptions, server shutting down
"""SQLSTATE prefixes of PostgreSQL errors that mean the server went away or refuses connections."""


def unavailable(exc: BaseException, where: str, busy_timeout: float | None = None) -> DatabaseUnavailable | None:
    """DatabaseUnavailable for a driver error that means the database cannot be used right now,
    else None. Accepts SQLAlchemy's wrapped errors and raw DBAPI ones (sqlite3, psycopg)."""
    if isinstance(exc, PoolTimeout):
        return DatabaseUnavailable(f"database {where}: no free connection in time (too many at once): "
                                   "try again shortly")
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    first = _short(exc).lower()
    module = type(orig).__module__.split(".")[0]
    sqlstate = str(getattr(orig, "sqlstate", "") or "")
    if module == "sqlite3":
        if "locked" in first or "busy" in first:
            waited = f" for {busy_timeout:g} s" if busy_timeout else ""
            return DatabaseUnavailable(
                f"database {where} is locked by another process (waited{waited}): try again later, "
                "or raise [storage] sqlite_busy_timeout")
        if "disk is full" in first or "disk full" in first:
            return DatabaseUnavailable(f"database {where}: the disk is full: free some space, then try again")
        if "readonly" in first or "read-only" in first:
            return DatabaseUnavailable(
                f"database {where} is read-only: give the tracker's user write access to the file "
                "and its folder", transient=False)
        if "unable to open" in first:
            return DatabaseUnavailable(
                f"cannot open database {where}: check that its folder exists and is writable",
                transient=False)
        if "disk i/o error" in first:
            return DatabaseUnavailable(f"database {where}: disk I/O error: check the disk, then try again")
        return None
    if module == "psycopg":
        if sqlstate == "53100" or "no space left" in first:
            return DatabaseUnavailable(f"database {where}: the server's disk is full: free some space, "
                                       "then try again")
        if sqlstate == "25006":
            return DatabaseUnavailable(f"database {where} is read-only (a standby, or "
                                       "default_transaction_read_only): point the tracker at the primary",
                                       transient=False)
        if sqlstate in ("55P03", "40P01", "40001") or sqlstate.startswith("53"):
            return DatabaseUnavailable(f"database {where} is busy ({_short(exc)}): try again later")
        connection_kind = any(c.__name__ in ("OperationalError", "InterfaceError") for c in type(orig).__mro__)
        if sqlstate.startswith(_PG_UNREACHABLE) or (not sqlstate and connection_kind):
            return DatabaseUnavailable(f"cannot open database {where}: {_short(exc)}: check that the "
                                       "server is running and reachable, then try again")
    return None


def is_driver_error(exc: BaseException) -> bool:
    """True for an error raised by SQLAlchemy or a database driver (its text may hold SQL and
    parameters: show `short_error` instead)."""
    return isinstance(exc, SQLAlchemyError) or type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg")


def short_error(exc: BaseException) -> str:
    """The first line of a driver error, without SQL or parameters."""
    return _short(exc)


def _short(exc: BaseException) -> str:
    """The first line of a driver error, without SQL or parameters."""
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def open_database(url: str, *, auto_upgrade: bool = True, sqlite_busy_timeout: float = 60.0) -> Database:
    """Open and check the database; create or upgrade the schema as allowed."""
    db = Database(url, sqlite_busy_timeout=sqlite_busy_timeout)
    try:
        db.ensure_schema(auto_upgrade=auto_upgrade)
    except Exception:
        db.dispose()
        raise
    return db
