"""What delivery has done, for `stripe-sync status` and the UI: receivers, cursors, dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from orchestration.core.rows import one_row
from orchestration.delivery.deliverer import feed_exists

_STATE = "stripe_raw.segment_delivery_state"
_DEAD_LETTERS = "stripe_raw.segment_delivery_dead_letters"


@dataclass(frozen=True)
class DeadLetter:
    """A change a receiver refused for good; the cursor moved past it."""

    endpoint_name: str
    change_id: int
    attempts: int
    last_status: int | None  # None: the receiver never answered
    reason: str
    dead_lettered_at: datetime
    payload: dict[str, Any]  # the body that was POSTed


@dataclass(frozen=True)
class EndpointStatus:
    """One receiver's place in the feed."""

    endpoint_name: str
    last_change_id: int
    pending: int  # changes after its cursor
    delivered_count: int
    dead_letter_count: int
    last_delivered_at: datetime | None
    last_error: str | None
    failing_attempts: int  # failed POSTs of the change after the cursor (0 when none failed)
    updated_at: datetime


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return one_row(conn.execute("select to_regclass(%s) is not null", (table,)))[0]


def list_dead_letters(
    conn: psycopg.Connection, *, endpoint_id: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """The most recent dead letters (of one receiver, or all), newest first; none before the
    first delivery created the table."""
    if not _exists(conn, _DEAD_LETTERS):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select endpoint_name, change_id, attempts, last_status, reason,"
            " dead_lettered_at, payload from stripe_raw.segment_delivery_dead_letters"
            " where %(endpoint_id)s::text is null or endpoint_id = %(endpoint_id)s"
            " order by dead_lettered_at desc, change_id desc limit %(limit)s",
            {"endpoint_id": endpoint_id, "limit": limit},
        ).fetchall()
    return [DeadLetter(**row) for row in rows]


def count_dead_letters(conn: psycopg.Connection, *, endpoint_id: str | None = None) -> int:
    """How many changes receivers refused for good (0 before any delivery)."""
    if not _exists(conn, _DEAD_LETTERS):
        return 0
    row = one_row(
        conn.execute(
            "select count(*) from stripe_raw.segment_delivery_dead_letters"
            " where %(endpoint_id)s::text is null or endpoint_id = %(endpoint_id)s",
            {"endpoint_id": endpoint_id},
        )
    )
    return int(row[0])


def delivery_status(
    conn: psycopg.Connection, *, endpoint_id: str | None = None
) -> list[EndpointStatus]:
    """Every receiver delivered to so far (or the one of `endpoint_id`): cursor and backlog."""
    if not _exists(conn, _STATE):
        return []
    # A range count on the feed's unique change_id index per receiver; there are few receivers.
    pending = (
        "(select count(*) from stripe_segments.segment_changes as feed"
        " where feed.change_id > state.last_change_id)"
        if feed_exists(conn)
        else "0"
    )
    query = (
        "select endpoint_name, last_change_id, delivered_count, dead_letter_count,"
        " last_delivered_at, last_error, failing_attempts, updated_at, {} as pending"
        " from stripe_raw.segment_delivery_state as state where {}"
        " order by endpoint_name, endpoint_id"
    )
    where = (
        sql.SQL("true") if endpoint_id is None else sql.SQL("endpoint_id = {}").format(endpoint_id)
    )
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql.SQL(query).format(sql.SQL(pending), where)).fetchall()
    return [EndpointStatus(**row) for row in rows]


def pending_changes(conn: psycopg.Connection, endpoint_id: str) -> int:
    """Changes after a receiver's cursor (all of them for a new receiver; 0 without a feed)."""
    if not feed_exists(conn):
        return 0
    last = 0
    if _exists(conn, _STATE):
        row = conn.execute(
            "select last_change_id from stripe_raw.segment_delivery_state where endpoint_id = %s",
            (endpoint_id,),
        ).fetchone()
        last = row[0] if row else 0
    row = one_row(
        conn.execute(
            "select count(*) from stripe_segments.segment_changes where change_id > %s",
            (last,),
        )
    )
    return int(row[0])
