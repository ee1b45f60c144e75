"""Loading into stripe_raw: COPY into a staging table, then one guarded upsert, with the cursor or
backfill progress committed in the same transaction as the rows it covers."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from orchestration.core.errors import DatabaseError, SyncBusyError
from orchestration.core.rows import one_row

SQL_DIR = Path(__file__).parent / "sql"
# Any fixed number works; it names "the Stripe sync" among the database's advisory locks.
SYNC_LOCK_KEY = 0x5752_1FE5_C0DE
LOST_LOCK_SQLSTATE = "SSYNC"  # raised by stripe_raw.require_sync_lock()

ObjectRow = tuple[str, bool, int, str, bool, datetime]


@cache
def read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def connect(database_url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection, or DatabaseError with the reason (never the password)."""
    try:
        return psycopg.connect(database_url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(
            f"cannot connect to the warehouse ({reason})",
            "check DATABASE_URL and that Postgres is running",
        ) from None


# The tables create_raw_tables.sql makes, checked before it is skipped.
RAW_TABLES = (
    "customers", "subscriptions", "invoices", "charges", "prices", "products",
    "checkout_sessions", "events", "activity_events", "sync_state",
)  # fmt: skip


def ensure_raw_tables(conn: psycopg.Connection) -> None:
    """Creates or upgrades the stripe_raw schema (create_raw_tables.sql is idempotent).

    Skipped when the schema's comment names this very DDL and every table exists: its `alter
    table … if not exists` lines take an exclusive lock even when they change nothing, and
    before every build (seconds apart under webhooks) that lock deadlocked with the receiver's
    transactions, which hold the raw tables while they wait on the events table.
    """
    ddl = read_sql("create_raw_tables")
    marker = f"stripe_sync raw schema {hashlib.sha256(ddl.encode()).hexdigest()[:16]}"
    if _raw_schema_is(conn, marker):
        return
    with conn.transaction():
        # Two first syncs at once would race on `create table if not exists`.
        conn.execute("select pg_advisory_xact_lock(%s)", (SYNC_LOCK_KEY + 1,))
        conn.execute(ddl)
        conn.execute(sql.SQL("comment on schema stripe_raw is {}").format(sql.Literal(marker)))


def _raw_schema_is(conn: psycopg.Connection, marker: str) -> bool:
    """The schema carries `marker` and every raw table exists (catalog reads only, no lock)."""
    row = conn.execute(
        "select obj_description(to_regnamespace('stripe_raw'), 'pg_namespace') = %s"
        " and (select count(*) from pg_tables where schemaname = 'stripe_raw'"
        "      and tablename = any(%s)) = %s",
        (marker, list(RAW_TABLES), len(RAW_TABLES)),
    ).fetchone()
    return bool(row and row[0])


def _ensure_stage(conn: psycopg.Connection) -> None:
    conn.execute(read_sql("create_stage_tables"))


def object_row(obj: dict[str, Any], snapshot_at: datetime, *, deleted: bool = False) -> ObjectRow:
    """The staged form of one Stripe object (JSON kept exactly as Stripe sent it)."""
    return (
        obj["id"],
        bool(obj.get("livemode", False)),
        int(obj.get("created") or 0),
        json.dumps(obj, separators=(",", ":")),
        deleted,
        snapshot_at,
    )


def upsert_objects(conn: psycopg.Connection, table: str, rows: Iterable[ObjectRow]) -> int:
    """Stages rows with COPY and upserts them into stripe_raw.<table>; returns rows written.
    Runs inside the caller's transaction, which also commits the cursor or progress."""
    _ensure_stage(conn)
    with conn.cursor() as cur:
        cur.execute("truncate stage_objects")
        with cur.copy(
            "copy stage_objects (id, livemode, created, data, is_deleted, snapshot_at) from stdin"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(sql.SQL(read_sql("upsert_objects")).format(table=sql.Identifier(table)))
        return cur.rowcount


def upsert_pages(
    conn: psycopg.Connection, table: str, pages: Iterable[tuple[str, datetime]]
) -> int:
    """Stages list pages (body text, snapshot time) with COPY and upserts their objects into
    stripe_raw.<table>; returns rows written. Runs inside the caller's transaction."""
    _ensure_stage(conn)
    with conn.cursor() as cur:
        cur.execute("truncate stage_pages")
        with cur.copy("copy stage_pages (body, snapshot_at) from stdin") as copy:
            for page in pages:
                copy.write_row(page)
        cur.execute(sql.SQL(read_sql("upsert_pages")).format(table=sql.Identifier(table)))
        return cur.rowcount


def insert_event_pages(conn: psycopg.Connection, pages: Iterable[tuple[str, datetime]]) -> int:
    """Stages list pages of past events (body text, snapshot time) with COPY and stores each
    event once (ON CONFLICT DO NOTHING), for history only; returns how many were new. Runs
    inside the caller's transaction, which also commits the import's progress."""
    _ensure_stage(conn)
    with conn.cursor() as cur:
        cur.execute("truncate stage_pages")
        with cur.copy("copy stage_pages (body, snapshot_at) from stdin") as copy:
            for page in pages:
                copy.write_row(page)
        cur.execute(read_sql("insert_event_pages"))
        return cur.rowcount


def insert_events(conn: psycopg.Connection, events: Iterable[dict[str, Any]]) -> int:
    """Stores events once each (ON CONFLICT DO NOTHING); returns how many were new."""
    _ensure_stage(conn)
    with conn.cursor() as cur:
        cur.execute("truncate stage_events")
        with cur.copy(
            "copy stage_events (id, livemode, created, data, type, object_id, api_version)"
            " from stdin"
        ) as copy:
            for event in events:
                obj = (event.get("data") or {}).get("object") or {}
                copy.write_row(
                    (
                        event["id"],
                        bool(event.get("livemode", False)),
                        int(event.get("created") or 0),
                        json.dumps(event, separators=(",", ":")),
                        event.get("type", ""),
                        obj.get("id"),
                        event.get("api_version"),
                    )
                )
        cur.execute(read_sql("insert_events"))
        return cur.rowcount


def mark_unseen_deleted(
    conn: psycopg.Connection, table: str, livemode: bool, started_at: datetime, upper: datetime
) -> int:
    """After a complete re-list, flags rows Stripe no longer returned as deleted."""
    query = sql.SQL(read_sql("mark_unseen_deleted")).format(table=sql.Identifier(table))
    cur = conn.execute(query, {"livemode": livemode, "started_at": started_at, "upper": upper})
    return cur.rowcount


def fenced_url(database_url: str, lock: psycopg.Connection) -> str:
    """The connection string for a sync's own connections while `lock` holds the sync lock:
    their writes of sync state fail once that connection lost it (create_raw_tables.sql,
    require_sync_lock), so a sync whose lock connection dropped stops at its next commit."""
    options = str(conninfo_to_dict(database_url).get("options") or "")
    options += f" -c stripe_sync.lock_pid={lock.info.backend_pid}"
    options += f" -c stripe_sync.lock_key={SYNC_LOCK_KEY}"
    return make_conninfo(database_url, options=options.strip())


def lost_sync_lock(exc: BaseException) -> bool:
    """The error a fenced connection gets when its sync no longer holds the sync lock."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate == LOST_LOCK_SQLSTATE


@contextmanager
def sync_lock(database_url: str, timeout: float = 0) -> Iterator[psycopg.Connection]:
    """Holds the warehouse-wide sync lock for the block: a second sync waits up to `timeout`
    seconds, then raises SyncBusyError, so two syncs never interleave. The lock is a session
    advisory lock: a killed process releases it with its connection. So does a dropped
    connection while the sync goes on: the sync's other connections use fenced_url, which stops
    it at its next commit. Behind PgBouncer in transaction mode a session lock means nothing:
    DATABASE_URL must reach Postgres directly or through session pooling."""
    conn = connect(database_url, autocommit=True)
    try:
        deadline = time.monotonic() + timeout
        while not one_row(conn.execute("select pg_try_advisory_lock(%s)", (SYNC_LOCK_KEY,)))[0]:
            if time.monotonic() >= deadline:
                raise SyncBusyError(
                    "another Stripe sync of this warehouse is running",
                    "wait for it to finish (see `stripe-sync status`), then run the sync again",
                )
            time.sleep(0.2)
        yield conn
    finally:
        conn.close()
