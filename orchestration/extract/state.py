"""stripe_raw.sync_state: per object type and mode, where the sync stands and how it went."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from orchestration.core.rows import one_row
from orchestration.extract.objects import OBJECTS, STATE_OBJECTS


class RefreshProgress(TypedDict):
    """sync_state.refresh_progress: where an interrupted new-only refresh resumes."""

    cursor: str | None  # the events cursor taken when the refresh began
    cursor_at: str  # its time, ISO 8601
    second: int | None
    after: str  # the last customer id done, "" before the first batch


@dataclass(frozen=True)
class ObjectState:
    object: str
    account_id: str
    status: str
    cursor: str | None
    cursor_at: datetime | None
    backfill_done: bool
    mode: str | None
    progress: dict[str, Any] | None


def load_state(conn: psycopg.Connection, livemode: bool) -> dict[str, ObjectState]:
    rows = conn.execute(
        """
        select object, account_id, status, cursor, cursor_at, backfill_done, mode,
            backfill_progress
        from stripe_raw.sync_state where livemode = %s
        """,
        (livemode,),
    ).fetchall()
    return {row[0]: ObjectState(*row) for row in rows}


def other_account(conn: psycopg.Connection, account_id: str) -> str | None:
    """The account id of existing state if it is not `account_id` (any mode)."""
    row = conn.execute(
        "select account_id from stripe_raw.sync_state where account_id <> %s limit 1",
        (account_id,),
    ).fetchone()
    return row[0] if row else None


def reset_all(conn: psycopg.Connection) -> None:
    """--reset: forget every synced object and all state, of every mode. activity_events is the
    user's own input and stays."""
    with conn.transaction():
        for table in (*(spec.table for spec in OBJECTS), "events"):
            conn.execute(sql.SQL("truncate stripe_raw.{}").format(sql.Identifier(table)))
        conn.execute("delete from stripe_raw.sync_state")


def init_state(
    conn: psycopg.Connection,
    livemode: bool,
    account_id: str,
    *,
    mode: str,
    cursor: str | None,
    cursor_at: datetime | None,
    backfill_done: bool,
) -> None:
    """The first row of each object for a mode: its account, mode and starting cursor."""
    with conn.transaction():
        for name in STATE_OBJECTS:
            conn.execute(
                """
                insert into stripe_raw.sync_state as s (
                    object, livemode, account_id, status, cursor, cursor_at, backfill_done, mode,
                    backfill_progress, started_at, updated_at
                ) values (%s, %s, %s, 'running', %s, %s, %s, %s, null, now(), now())
                on conflict (object, livemode) do update set
                    account_id = excluded.account_id, status = 'running',
                    cursor = excluded.cursor, cursor_at = excluded.cursor_at,
                    backfill_done = excluded.backfill_done, mode = excluded.mode,
                    backfill_progress = null, refresh_progress = null, started_at = now(),
                    updated_at = now()
                """,
                (name, livemode, account_id, cursor, cursor_at, backfill_done, mode),
            )


def mark_running(conn: psycopg.Connection, livemode: bool) -> None:
    with conn.transaction():
        conn.execute(
            "update stripe_raw.sync_state set status = 'running', started_at = now(),"
            " updated_at = now() where livemode = %s",
            (livemode,),
        )


def save_progress(
    conn: psycopg.Connection, table: str, livemode: bool, progress: dict[str, Any]
) -> None:
    """Backfill progress of one object; call inside the transaction that commits its rows."""
    conn.execute(
        "update stripe_raw.sync_state set backfill_progress = %s, updated_at = now()"
        " where object = %s and livemode = %s",
        (Jsonb(progress), table, livemode),
    )


def lock_progress(conn: psycopg.Connection, table: str, livemode: bool) -> dict[str, Any] | None:
    """The committed backfill progress of one object, row-locked until the transaction ends."""
    row = conn.execute(
        "select backfill_progress from stripe_raw.sync_state"
        " where object = %s and livemode = %s for update",
        (table, livemode),
    ).fetchone()
    return row[0] if row else None


def start_backfill(
    conn: psycopg.Connection, livemode: bool, cursor: str | None, cursor_at: datetime | None
) -> None:
    """A fresh full re-list: progress cleared; events replay afterwards from `cursor`."""
    with conn.transaction():
        conn.execute(
            "update stripe_raw.sync_state set backfill_done = false, backfill_progress = null,"
            " cursor = %s, cursor_at = %s, updated_at = now() where livemode = %s",
            (cursor, cursor_at, livemode),
        )


def load_refresh(conn: psycopg.Connection, livemode: bool) -> RefreshProgress | None:
    """The committed progress of an interrupted new-only refresh (None: none is under way)."""
    row = conn.execute(
        "select refresh_progress from stripe_raw.sync_state"
        " where object = 'events' and livemode = %s",
        (livemode,),
    ).fetchone()
    return row[0] if row else None


def save_refresh(conn: psycopg.Connection, livemode: bool, progress: RefreshProgress) -> None:
    """New-only refresh progress; call inside the transaction that commits its rows."""
    conn.execute(
        "update stripe_raw.sync_state set refresh_progress = %s, updated_at = now()"
        " where object = 'events' and livemode = %s",
        (Jsonb(progress), livemode),
    )


def restart_cursor(
    conn: psycopg.Connection, livemode: bool, cursor: str | None, cursor_at: datetime
) -> None:
    """The events cursor of one mode restarts at `cursor` (the end of a new-only refresh); call
    inside the transaction that commits the refresh's last rows."""
    conn.execute(
        "update stripe_raw.sync_state set cursor = %s, cursor_at = %s, refresh_progress = null,"
        " updated_at = now() where livemode = %s",
        (cursor, cursor_at, livemode),
    )


def finish_backfill(conn: psycopg.Connection, livemode: bool) -> None:
    conn.execute(
        "update stripe_raw.sync_state set backfill_done = true, updated_at = now()"
        " where livemode = %s",
        (livemode,),
    )


def record_success(conn: psycopg.Connection, livemode: bool) -> dict[str, int]:
    """Status ok, last success now, exact row counts; returns the counts per object."""
    counts: dict[str, int] = {}
    with conn.transaction():
        for name in STATE_OBJECTS:
            query = sql.SQL("select count(*) from stripe_raw.{} where livemode = %s").format(
                sql.Identifier(name)
            )
            counts[name] = one_row(conn.execute(query, (livemode,)))[0]
            conn.execute(
                "update stripe_raw.sync_state set status = 'ok', last_success_at = now(),"
                " last_error = null, rows = %s, updated_at = now()"
                " where object = %s and livemode = %s",
                (counts[name], name, livemode),
            )
    return counts


def record_failure(conn: psycopg.Connection, livemode: bool, message: str) -> None:
    """Status failed with the (already sanitized) reason; rows and cursor stay as committed."""
    with conn.transaction():
        conn.execute(
            "update stripe_raw.sync_state set status = 'failed', last_error = %s,"
            " updated_at = now() where livemode = %s",
            (message[:2000], livemode),
        )
