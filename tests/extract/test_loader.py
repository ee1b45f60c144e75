"""The loader against real Postgres: idempotent DDL, guarded upserts, events once, the lock."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from orchestration.core.errors import SyncBusyError
from orchestration.extract import loader
from orchestration.extract.backfill import Intervals, _slice_bounds

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def conn(database_url: str):
    with psycopg.connect(database_url) as connection:
        loader.ensure_raw_tables(connection)
        connection.commit()
        yield connection


def _customer(name: str) -> dict:
    return {"id": "cus_1", "object": "customer", "livemode": False, "created": 1_700_000_000,
            "name": name}  # fmt: skip


def _stored(conn: psycopg.Connection) -> tuple[str, bool]:
    return conn.execute(
        "select data ->> 'name', is_deleted from stripe_raw.customers where id = 'cus_1'"
    ).fetchone()


def test_raw_tables_ddl_is_idempotent_and_has_contract_columns(conn: psycopg.Connection) -> None:
    loader.ensure_raw_tables(conn)
    columns = {
        row[0]
        for row in conn.execute(
            "select column_name from information_schema.columns"
            " where table_schema = 'stripe_raw' and table_name = 'sync_state'"
        )
    }
    assert {"object", "livemode", "account_id", "status", "cursor", "cursor_at", "backfill_done",
            "last_success_at", "last_error", "rows", "updated_at"} <= columns  # fmt: skip


def test_raw_tables_ddl_waits_on_no_writer_once_current(database_url: str) -> None:
    """Builds run it seconds apart while webhook deliveries write: once the schema is current it
    must take no lock a writer holds (its `alter table` lines deadlocked with the receiver)."""
    with psycopg.connect(database_url, autocommit=True) as setup:
        loader.ensure_raw_tables(setup)
    with psycopg.connect(database_url) as writer:
        writer.execute("lock table stripe_raw.events in row exclusive mode")  # a delivery's
        with psycopg.connect(database_url, autocommit=True) as builder:
            builder.execute("set lock_timeout = '1s'")
            loader.ensure_raw_tables(builder)  # LockNotAvailable if it still altered the table
        writer.rollback()
    with psycopg.connect(database_url, autocommit=True) as repair:
        repair.execute("drop table stripe_raw.activity_events")
        loader.ensure_raw_tables(repair)
        assert repair.execute("select to_regclass('stripe_raw.activity_events')").fetchone()[0]


def test_older_snapshot_never_overwrites_newer(conn: psycopg.Connection) -> None:
    with conn.transaction():
        loader.upsert_objects(conn, "customers", [loader.object_row(_customer("new"), T0)])
    with conn.transaction():
        old = loader.object_row(_customer("old"), T0 - timedelta(seconds=1))
        assert loader.upsert_objects(conn, "customers", [old]) == 0
    assert _stored(conn) == ("new", False)


def test_newest_snapshot_in_one_batch_wins(conn: psycopg.Connection) -> None:
    rows = [
        loader.object_row(_customer("b"), T0 + timedelta(seconds=2)),
        loader.object_row(_customer("a"), T0),
    ]
    with conn.transaction():
        loader.upsert_objects(conn, "customers", rows)
    assert _stored(conn) == ("b", False)


def test_deletion_is_kept_when_a_later_snapshot_arrives(conn: psycopg.Connection) -> None:
    with conn.transaction():
        loader.upsert_objects(
            conn, "customers", [loader.object_row(_customer("x"), T0, deleted=True)]
        )
    with conn.transaction():
        loader.upsert_objects(conn, "customers", [loader.object_row(_customer("y"), T0)])
    assert _stored(conn) == ("y", True)


def test_events_are_stored_once(conn: psycopg.Connection) -> None:
    event = {"id": "evt_1", "object": "event", "livemode": False, "created": 1_700_000_000,
             "type": "customer.updated", "api_version": "2026-10-28.endive",
             "data": {"object": _customer("z")}}  # fmt: skip
    with conn.transaction():
        assert loader.insert_events(conn, [event]) == 1
    with conn.transaction():
        assert loader.insert_events(conn, [event]) == 0
    row = conn.execute("select type, object_id, data from stripe_raw.events").fetchone()
    assert row[:2] == ("customer.updated", "cus_1")
    assert row[2] == json.loads(json.dumps(event))


def test_second_sync_lock_raises_sync_busy(database_url: str) -> None:
    with (
        loader.sync_lock(database_url),
        pytest.raises(SyncBusyError, match="another Stripe sync"),
        loader.sync_lock(database_url, timeout=0.3),
    ):
        pass
    with loader.sync_lock(database_url):  # released when the first holder leaves
        pass


@pytest.mark.parametrize(
    ("added", "gaps"),
    [
        ([], [(0, 100)]),
        ([(10, 20), (20, 30)], [(0, 10), (30, 100)]),
        ([(50, 60), (0, 5), (55, 100)], [(5, 50)]),
    ],
    ids=["empty", "adjacent-merge", "overlap-merge"],
)
def test_backfill_progress_gaps(added: list[tuple[int, int]], gaps: list[tuple[int, int]]) -> None:
    done = Intervals()
    for a, b in added:
        done.add(a, b)
    assert done.gaps(0, 100) == gaps


@pytest.mark.parametrize(("lo", "hi", "k"), [(0, 1000, 4), (10, 14, 8), (0, 2, 2)])
def test_window_slices_cover_the_range_newest_narrowest(lo: int, hi: int, k: int) -> None:
    bounds = _slice_bounds(lo, hi, k)
    assert bounds[0] == lo
    assert bounds[-1] == hi
    assert bounds == sorted(set(bounds))
    assert len(bounds) - 1 <= k
    widths = [b - a for a, b in itertools.pairwise(bounds)]
    assert widths[-1] <= widths[0]
