"""The reader_guard checks fail on what they guard against.

Run on their own (`dbt build --select tag:reader_guard`), they take the form of a build that
recomputed every customer: the segment tables' unique indexes checked in the catalog, and their
null keys counted, instead of every key read.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from conftest import create_raw_tables
from dbt_raw_dataset import AS_OF, insert_raw_dataset

from orchestration.core.errors import BuildError
from orchestration.transform.runner import build

ONE_ROW = "assert_segment_memberships__one_row_per_member_in_every_segment"
MATCH = "assert_segment_memberships__match_segment_tables"


def _run_guards(database_url: str, target: Path) -> None:
    build(database_url, as_of=AS_OF, livemode=False, target_path=target, select="tag:reader_guard")


def _failing_guard(database_url: str, target: Path) -> str:
    with pytest.raises(BuildError) as failure:
        _run_guards(database_url, target)
    return failure.value.one_line()


def _execute(database_url: str, statement: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(statement)


def test_the_guards_fail_on_a_missing_unique_index_a_repeated_null_key_or_a_stray_membership(
    database_url: str, tmp_path: Path
) -> None:
    create_raw_tables(database_url)
    insert_raw_dataset(database_url)
    build(database_url, as_of=AS_OF, livemode=False, target_path=tmp_path)
    _run_guards(database_url, tmp_path)  # the built warehouse passes

    _execute(
        database_url,
        "insert into stripe_segments.current_trials (stripe_customer_id) values (null), (null)",
    )
    assert ONE_ROW in _failing_guard(database_url, tmp_path)
    _execute(
        database_url, "delete from stripe_segments.current_trials where stripe_customer_id is null"
    )

    with psycopg.connect(database_url) as conn:
        (index,) = conn.execute(
            "select indexrelid::regclass::text from pg_index"
            " where indrelid = 'stripe_segments.customers'::regclass and indisunique"
        ).fetchone() or ("",)
        conn.execute(f"drop index {index}")
    assert ONE_ROW in _failing_guard(database_url, tmp_path)
    _execute(
        database_url,
        "create unique index on stripe_segments.customers (stripe_customer_id)",
    )
    _run_guards(database_url, tmp_path)

    _execute(
        database_url,
        "insert into stripe_segments.segment_memberships (segment, stripe_customer_id)"
        " values ('churned_customers', 'cus_not_churned')",
    )
    message = _failing_guard(database_url, tmp_path)
    assert MATCH in message
    assert ONE_ROW not in message
