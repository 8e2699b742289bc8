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
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage.sqlite_tuning import memory_statistics_off
from tracker.errors import DatabaseError

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
        return make_url(self.url).render_as_string(hide_password=True)

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; rolled back at the end."""
        with self._read() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._write() as session, session.begin():
            yield session

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
            raise DatabaseError(f"cannot open database {self.display_url}: {_short(exc)}") from None
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
            raise DatabaseError(f"migrating {self.display_url} failed: {_short(exc)}") from None
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
