"""Fixtures: a database holding a change feed with the contract's columns, and a receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.delivery.receiver import Receiver, serve

T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)

# The feed's columns as the contract names them (dbt builds the real one; these tests need
# only its shape).
FEED_DDL = """
create schema if not exists stripe_segments;
create table stripe_segments.segment_changes (
    change_id bigint not null unique,
    segment text,
    stripe_customer_id text,
    customer_email text,
    change text,
    changed_at timestamptz,
    detected_at timestamptz,
    livemode boolean
);
"""


def add_changes(database_url: str, count: int) -> list[int]:
    """Appends `count` changes after the feed's last change_id, as a build does; their ids."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        last = conn.execute(
            "select coalesce(max(change_id), 0) from stripe_segments.segment_changes"
        ).fetchone()[0]
        ids = list(range(last + 1, last + count + 1))
        with conn.cursor() as cur:
            cur.executemany(
                "insert into stripe_segments.segment_changes values"
                " (%s, %s, %s, %s, %s, %s, %s, false)",
                [
                    (
                        change_id,
                        "current_trials" if change_id % 2 else "customers",
                        f"cus_{change_id:04d}",
                        f"c{change_id}@example.com",
                        "entered" if change_id % 3 else "exited",
                        None if change_id % 5 == 0 else T0 + timedelta(minutes=change_id),
                        T0 + timedelta(hours=1, microseconds=change_id),
                    )
                    for change_id in ids
                ],
            )
    return ids


@pytest.fixture
def feed_url(database_url: str) -> str:
    """A fresh database with an empty change feed."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(FEED_DDL)
    return database_url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 that verifies signatures and answers 200."""
    with serve(Receiver()) as running:
        yield running
