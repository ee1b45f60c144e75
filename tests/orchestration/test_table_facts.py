"""What a dbt asset's page shows of its table: an exact count while counting is cheap."""

from __future__ import annotations

import psycopg
import pytest

from orchestration.defs.assets import dbt as dbt_assets


def _customer_fields(database_url: str, rows: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create schema stripe")
        conn.execute("create table stripe.customer_fields (stripe_customer_id text)")
        conn.execute(
            "insert into stripe.customer_fields select 'cus_' || i from generate_series(1, %s) i",
            (rows,),
        )
        conn.execute("analyze stripe.customer_fields")


def test_a_small_table_is_counted_exactly(database_url: str) -> None:
    _customer_fields(database_url, 40)
    facts = dbt_assets.table_facts(database_url, "stripe", "customer_fields")
    assert facts["dagster/row_count"].value == 40
    assert facts["customers_in_sync"].value == 40


def test_a_big_table_shows_the_planner_s_estimate_without_reading_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past EXACT_COUNT_MAX_ROWS the page shows pg_class's estimate, named as one; no count(*)
    reads the table (its sequential scans do not move)."""
    _customer_fields(database_url, 5000)
    monkeypatch.setattr(dbt_assets, "EXACT_COUNT_MAX_ROWS", 1000)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("select pg_stat_force_next_flush()")
        scans = "select seq_scan from pg_stat_user_tables where relname = 'customer_fields'"
        before = conn.execute(scans).fetchone()[0]
        facts = dbt_assets.table_facts(database_url, "stripe", "customer_fields")
        conn.execute("select pg_stat_force_next_flush()")
        assert conn.execute(scans).fetchone()[0] == before
    assert "dagster/row_count" not in facts
    assert facts["row_count_estimate"].value == 5000
    assert facts["customers_in_sync_estimate"].value == 5000
