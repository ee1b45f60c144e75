"""Postgres URLs: parsing, rewriting for psycopg / SQLAlchemy / dbt, and reachability."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from orchestration.core.errors import DatabaseError

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_SCHEMES = ("postgresql", "postgres")
# The NOTIFY channel of "webhook deliveries changed stripe_raw": the receiver notifies in the
# transaction that applies them (delivered at commit), the resident builder listens.
RAW_CHANGED_CHANNEL = "stripe_sync_raw_changed"


@dataclass(frozen=True)
class DatabaseParams:
    """The parts of a Postgres URL, as libpq, SQLAlchemy and dbt each want them."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    query: dict[str, str]


def parse_database_url(url: str) -> DatabaseParams:
    """Splits a `postgresql://` URL; raises DatabaseError naming the problem if it is not one.

    libpq's own parser (through psycopg) reads it, so percent-encoding, `?host=/socket/dir` and
    every libpq option mean here what they mean to the connection; a `+driver` suffix (as in a
    SQLAlchemy URL) is dropped first, since libpq does not know it.
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.split("+")[0] not in POSTGRES_SCHEMES:
        raise DatabaseError(
            "DATABASE_URL is not a Postgres URL",
            "use the form postgresql://user:password@host:5432/database",
        )
    try:
        options = conninfo_to_dict(f"postgresql://{rest}")
    except psycopg.ProgrammingError as exc:
        raise DatabaseError(
            f"DATABASE_URL is not a valid Postgres URL: {str(exc).strip()}",
            "use the form postgresql://user:password@host:5432/database",
        ) from None
    try:
        port = int(options.pop("port", None) or 5432)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise DatabaseError("DATABASE_URL has an invalid port", "use a port number from 1 to 65535")
    return DatabaseParams(
        host=str(options.pop("host", None) or "localhost"),
        port=port,
        user=str(options.pop("user", None) or "postgres"),
        password=str(options.pop("password", None) or ""),
        dbname=str(options.pop("dbname", None) or "postgres"),
        query={key: str(value) for key, value in options.items()},
    )


def build_url(
    params: DatabaseParams, *, scheme: str = "postgresql", dbname: str | None = None
) -> str:
    """Assembles a URL; a Unix-socket host goes into the query, as libpq and SQLAlchemy expect.

    Assembled with urllib because neither library builds one that fits: psycopg's
    `make_conninfo` gives `key=value` strings (Settings and dagster-postgres take URLs), and
    SQLAlchemy's URL leaves a `/` or `?` in a database name unquoted (and takes seconds to import
    where the CLI only needs a string).
    """
    auth = quote(params.user, safe="")
    if params.password:
        auth += ":" + quote(params.password, safe="")
    query = dict(params.query)
    if params.host.startswith("/"):
        query["host"] = params.host
        query["port"] = str(params.port)
        netloc = f"{auth}@"
    else:
        host = f"[{params.host}]" if ":" in params.host else params.host
        netloc = f"{auth}@{host}:{params.port}"
    path = "/" + quote(dbname if dbname is not None else params.dbname, safe="")
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    return build_url(parse_database_url(url), dbname=dbname)


def sqlalchemy_url(url: str) -> str:
    """The URL for dagster-postgres: psycopg2, as SQLAlchemy 2.1 breaks it on psycopg 3."""
    return build_url(parse_database_url(url), scheme="postgresql+psycopg2")


def dbt_env(url: str) -> dict[str, str]:
    """Environment variables read by profiles/profiles.yml."""
    params = parse_database_url(url)
    return {
        "STRIPE_SYNC_PGHOST": params.host,
        "STRIPE_SYNC_PGPORT": str(params.port),
        "STRIPE_SYNC_PGUSER": params.user,
        "STRIPE_SYNC_PGPASSWORD": params.password,
        "STRIPE_SYNC_PGDATABASE": params.dbname,
        "STRIPE_SYNC_PGSSLMODE": params.query.get("sslmode", "prefer"),
    }


def describe(url: str) -> str:
    """A printable description of where a URL points, without its password."""
    params = parse_database_url(url)
    where = params.host if params.host.startswith("/") else f"{params.host}:{params.port}"
    return f"postgres://{params.user}@{where}/{params.dbname}"
