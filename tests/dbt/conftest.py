"""Fixtures for the dbt tests: a warehouse with the raw tables, built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from dbt_raw_dataset import AS_OF, insert_raw_dataset

from orchestration.core.warehouse import with_database
from orchestration.transform.runner import BuildResult, build, ensure_raw_tables
from tests.conftest import _create_database, _drop_database


def create_raw_tables(database_url: str) -> None:
    """Runs the extractor's DDL, as the first sync would."""
    ensure_raw_tables(database_url)


@pytest.fixture(scope="session")
def built_warehouse(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, BuildResult]]:
    """A database holding the hand-made raw dataset, built once at AS_OF in test mode.

    Shared by the read-only tests of test_marts.py and test_docs.py; tests that write make their
    own database with `database_url`.
    """
    name = _create_database(server_url, "stripe_sync_test")
    url = with_database(server_url, name)
    try:
        create_raw_tables(url)
        insert_raw_dataset(url)
        target: Path = tmp_path_factory.mktemp("dbt_target")
        result = build(url, as_of=AS_OF, livemode=False, target_path=target)
        yield url, result
    finally:
        _drop_database(server_url, name)  # audited for secrets first, like every test database


def fetch_dicts(database_url: str, query: str) -> list[dict[str, object]]:
    """Rows of a query as dicts keyed by column name."""
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute(query)
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def skew_mrr_daily_day(database_url: str, day: date) -> None:
    """Makes mrr_daily's rows of `day` wrong by one unit.

    Its merge leaves a row alone when a build computes the same values again, so a test that
    asks which customers a build recomputed skews their rows first: a recomputed row is written
    back (a new xmin), an untouched one stays wrong.
    """
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update stripe.mrr_daily set customer_mrr = customer_mrr + 1 where mrr_date = %s",
            (day,),
        )
