"""The database: engine setup for SQLite (default) or PostgreSQL, the schema and its migrations.

Everything is SQLAlchemy 2 Core: tables are plain ``Table`` objects and the stores write SQL
expressions, so one reader can follow every statement the gateway sends.

SQLite runs in WAL mode with a busy timeout, and transactions are started explicitly (the
pysqlite driver's own implicit BEGIN handling is switched off, as SQLAlchemy's documentation
recommends) so a write transaction can take the write lock up front (``BEGIN IMMEDIATE``):
a claim then never fails with "database is locked" half-way through.

The schema is created and upgraded by the program: ``schema_version`` holds the number of the
last applied step of ``MIGRATIONS``; ``migrate()`` applies the missing steps in order, each in
its own transaction, under a lock (PostgreSQL advisory lock / SQLite write lock) so two nodes
starting at once do not race.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.types import TypeDecorator

DB_FILENAME = "imagegate.db"
SQLITE_BUSY_TIMEOUT = 30.0  # seconds a writer waits for the lock before "database is locked"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC, on SQLite and PostgreSQL.

    SQLite has no time zones: values are stored as naive UTC strings (which sort and compare
    correctly as text). PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: imagegate stores UTC-aware times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("front", String(64)),
    Column("request", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider", String(64)),
    Column("upstream_task_id", String(256)),
    Column("lease_owner", String(64)),
    Column("lease_until", UtcDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    # set while an upstream submit is in flight: if the process dies before the upstream id is
    # written, the next worker knows the upstream may already have the task
    Column("submitting_since", UtcDateTime),
    Column("submit_time", UtcDateTime, nullable=False),
    Column("upstream_submit_time", UtcDateTime),
    Column("scheduled_time", UtcDateTime),
    Column("end_time", UtcDateTime),
    Column("images", JSON),
    Column("usage", JSON),
    Column("error_code", String(128)),
    Column("error_message", Text),
    Column("warnings", JSON),
    Column("request_id", String(128)),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_tasks_owner_submit", "owner", "submit_time"),
    Index("ix_tasks_status_lease", "status", "lease_until"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),  # the public app_id
    Column("name", String(256), nullable=False, default=""),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("qps", Float, nullable=False),
    Column("max_in_flight", Integer, nullable=False),
    Column("models", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("is_default", Boolean, nullable=False, default=False),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

settings = Table(
    "settings",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)


def _create_v1(conn: Connection) -> None:
    """Step 1: the first schema (tasks, keys, access tokens, settings)."""
    metadata.create_all(conn, tables=[tasks, api_keys, access_tokens, settings], checkfirst=True)


#: ordered schema steps; never edit a released step, append a new one
MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1]


def database_url_for(data_dir: Path | str) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / DB_FILENAME}"


def open_engine(
    data_dir: Path | str | None = None,
    database_url: str | None = None,
    *,
    schema: str | None = None,
) -> Engine:
    """An engine for ``database_url`` (default: ``<data_dir>/imagegate.db``), migrated.

    ``schema`` (PostgreSQL only) puts every table in that schema (created when missing); tests
    use it to keep parallel runs apart.
    """
    if database_url is None:
        if data_dir is None:
            raise ValueError("open_engine needs a data_dir or a database_url")
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        database_url = database_url_for(data_dir)
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    if database_url.startswith("sqlite"):
        if schema is not None:
            raise ValueError("schema is a PostgreSQL option; SQLite keeps one database per file")
        engine = create_engine(
            database_url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False},
        )
        _sqlite_setup(engine)
    else:
        engine = create_engine(database_url, pool_pre_ping=True)
        if schema is not None:
            _use_schema(engine, schema)
    migrate(engine)
    return engine


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _use_schema(engine: Engine, schema: str) -> None:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"schema {schema!r} must be a lowercase SQL identifier")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET search_path TO {schema}")
        cursor.close()
        dbapi_connection.commit()

    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction: takes SQLite's write lock at BEGIN; commits on success."""
    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
        yield conn


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction (one consistent snapshot)."""
    with engine.connect() as conn, conn.begin():
        yield conn


def current_version(conn: Connection) -> int:
    if not conn.dialect.has_table(conn, "schema_version"):
        return 0
    value = conn.execute(select(schema_version.c.version)).scalar()
    return int(value or 0)


def migrate(engine: Engine) -> int:
    """Apply every missing step of ``MIGRATIONS``; return the schema version. Idempotent."""
    for step, apply in enumerate(MIGRATIONS, start=1):
        with write(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7206182031)"))
            schema_version.create(conn, checkfirst=True)
            version = current_version(conn)
            if version >= step:
                continue
            apply(conn)
            conn.execute(schema_version.delete())
            conn.execute(schema_version.insert().values(version=step, applied_at=utcnow()))
    with read(engine) as conn:
        return current_version(conn)


def drop_schema(engine: Engine, schema: str) -> None:
    """Remove a PostgreSQL schema and everything in it (test cleanup)."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"schema {schema!r} must be a lowercase SQL identifier")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
