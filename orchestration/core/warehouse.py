"""Postgres URLs: parsing, rewriting for psycopg / SQLAlchemy / dbt, and reachability."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg

from orchestration.core.errors import DatabaseError

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_SCHEMES = ("postgresql", "postgres")


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
    """Splits a `postgresql://` URL; raises DatabaseError naming the problem if it is not one."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.split("+")[0]
    if scheme not in POSTGRES_SCHEMES:
        raise DatabaseError(
            "DATABASE_URL is not a Postgres URL",
            "use the form postgresql://user:password@host:5432/database",
        )
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    try:
        port = parts.port or int(query.get("port", 5432))
    except ValueError as exc:
        raise DatabaseError(
            "DATABASE_URL has an invalid port", "use a port number from 1 to 65535"
        ) from exc
    host = query.pop("host", None) or parts.hostname or "localhost"
    return DatabaseParams(
        host=host,
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=unquote(parts.path.lstrip("/")) or "postgres",
        query={k: v for k, v in query.items() if k != "port"},
    )


def build_url(
    params: DatabaseParams, *, scheme: str = "postgresql", dbname: str | None = None
) -> str:
    """Assembles a URL; a Unix-socket host goes into the query, as libpq and SQLAlchemy expect."""
    auth = quote(params.user, safe="")
    if params.password:
        auth += ":" + quote(params.password, safe="")
    query = dict(params.query)
    if params.host.startswith("/"):
        query["host"] = params.host
        query["port"] = str(params.port)
        netloc = f"{auth}@"
    else:
        netloc = f"{auth}@{params.host}:{params.port}"
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


def server_url_for_tests(url: str | None) -> str:
    """The server tests use: the given URL, else the local server on 127.0.0.1:5432 if it answers,
    else the embedded Postgres."""
    if url:
        return url
    try:
        with psycopg.connect(LOCAL_SERVER_URL, connect_timeout=3):
            return LOCAL_SERVER_URL
    except psycopg.OperationalError:
        from orchestration.core.settings import default_state_dir
        from orchestration.embedded.postgres import embedded_server_url

        return embedded_server_url(default_state_dir() / "test-postgres")
