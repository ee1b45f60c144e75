"""Where things run: the warehouse database, Dagster's storage and home, from the Settings."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import psycopg
from psycopg import sql

from orchestration.core.errors import DatabaseError
from orchestration.core.rows import one_row
from orchestration.core.settings import PROJECT_ROOT, Settings, default_state_dir
from orchestration.core.warehouse import (
    LOCAL_SERVER_URL,
    describe,
    parse_database_url,
    sqlalchemy_url,
    with_database,
)
from orchestration.embedded.postgres import embedded_server_url

EMBEDDED_WAREHOUSE_DB = "stripe_sync"
CONNECT_TIMEOUT = 5

# libpq's wording → what to tell the user. Order matters: the first match wins.
_CONNECTION_PROBLEMS = (
    (
        "password authentication failed",
        "the database rejected the user or password",
        "check the user and password in DATABASE_URL",
    ),
    (
        "no password supplied",
        "the database wants a password and DATABASE_URL has none",
        "add the password: postgresql://user:password@host:5432/database",
    ),
    (
        "could not translate host name",
        "the database host in DATABASE_URL is unknown",
        "check the host name in DATABASE_URL",
    ),
    (
        "name or service not known",
        "the database host in DATABASE_URL is unknown",
        "check the host name in DATABASE_URL",
    ),
    (
        "connection refused",
        "nothing answers at the host and port of DATABASE_URL",
        "start Postgres or fix the host/port in DATABASE_URL",
    ),
    (
        "does not exist",
        "the database named in DATABASE_URL does not exist",
        "create it (createdb NAME) or fix the name in DATABASE_URL",
    ),
    (
        "timeout expired",
        "the database in DATABASE_URL did not answer in time",
        "check the host, port and firewall",
    ),
    (
        "no such file or directory",
        "no Postgres socket at the path in DATABASE_URL",
        "start Postgres or fix the host in DATABASE_URL",
    ),
)


def connection_error(exc: Exception, url: str) -> DatabaseError:
    """Turns a psycopg connection failure into one line naming the problem and the fix."""
    text = str(exc).lower()
    for needle, problem, fix in _CONNECTION_PROBLEMS:
        if needle in text:
            return DatabaseError(f"{problem} ({describe(url)})", fix)
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseError(
        f"cannot connect to the database {describe(url)}: {first_line}", "check DATABASE_URL"
    )


def check_database(url: str) -> str:
    """Connects once and returns the server version; raises DatabaseError on any failure."""
    parse_database_url(url)
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as conn:
            return str(one_row(conn.execute("show server_version"))[0])
    except psycopg.Error as exc:
        raise connection_error(exc, url) from None


def ensure_database(server_url: str, dbname: str) -> str:
    """Creates `dbname` on the server of `server_url` if missing; returns its URL."""
    admin_url = with_database(server_url, "postgres")
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as c:
            exists = c.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
            # Another process may create it between our check and our create: that is fine
            # (Postgres reports that race as a unique violation on pg_database).
            with contextlib.suppress(
                psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
            ):
                if not exists:
                    c.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    except psycopg.Error as exc:
        raise connection_error(exc, admin_url) from None
    return with_database(server_url, dbname)


def embedded_url(settings: Settings, dbname: str) -> str:
    """Starts the embedded Postgres if needed and returns the URL of `dbname` on it."""
    return ensure_database(embedded_server_url(settings.state_dir), dbname)


def warehouse_url(settings: Settings) -> str:
    """DATABASE_URL, or the `stripe_sync` database of the embedded Postgres."""
    if settings.database_url:
        return settings.database_url.get_secret_value()
    return embedded_url(settings, EMBEDDED_WAREHOUSE_DB)


def dagster_storage_url(settings: Settings, warehouse: str) -> str:
    """Dagster's run/event/schedule storage: `<warehouse db>_dagster` on the warehouse's server.

    On a server where we may not create databases, Dagster's tables share the warehouse database
    (they live in `public`, apart from our schemas).
    """
    try:
        url = ensure_database(warehouse, f"{parse_database_url(warehouse).dbname}_dagster")
    except DatabaseError:
        if settings.database_url is None:
            raise
        url = warehouse
    return sqlalchemy_url(url)


def prepare_dagster_home(settings: Settings, warehouse: str) -> Path:
    """Points DAGSTER_HOME at a folder with our dagster.yaml and exports its storage URL.

    The storage URL travels in an environment variable, so no password lands in a file.
    """
    home = settings.resolved_dagster_home
    home.mkdir(parents=True, exist_ok=True)
    template = PROJECT_ROOT / "dagster.yaml"
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text() != template.read_text():
        shutil.copyfile(template, target)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["STRIPE_SYNC_DAGSTER_PG_URL"] = dagster_storage_url(settings, warehouse)
    return home


def server_url_for_tests(url: str | None) -> str:
    """The server tests use: the given URL, else the local server on 127.0.0.1:5432 if it answers,
    else the embedded Postgres."""
    if url:
        return url
    try:
        with psycopg.connect(LOCAL_SERVER_URL, connect_timeout=3):
            return LOCAL_SERVER_URL
    except psycopg.OperationalError:
        return embedded_server_url(default_state_dir() / "test-postgres")
