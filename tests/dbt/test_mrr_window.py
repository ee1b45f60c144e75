"""The MRR history's window (macros/mrr_window.sql): a build rewrites only the touched customers'
MRR rows, and every customer's, in every MRR model of the build alike, once events older than
every stored one arrive (a backfill of events moves the start of every reconstruction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from conftest import create_raw_tables, skew_mrr_daily_day
from dbt_raw_dataset import AS_OF, SUB_A1, event, insert_raw_dataset, store_event

from orchestration.transform.runner import build

MRR_TABLES = [
    "stripe_staging.int_mrr_invoice_periods",
    "stripe_staging.int_mrr_subscription_states",
    "stripe_staging.int_mrr_subscription_state_discounts",
    "stripe.mrr_daily",
    "stripe.mrr_movements",
]

# Each row's version: a row rewritten by a build's merge gets the build's transaction id.
RowVersions = dict[str, set[tuple[str, str]]]


def _row_versions(database_url: str) -> RowVersions:
    with psycopg.connect(database_url) as conn:
        return {
            table: {
                (str(customer), str(version))
                for customer, version in conn.execute(
                    f"select stripe_customer_id, xmin::text from {table}"
                ).fetchall()
            }
            for table in MRR_TABLES
        }


def _rewritten_customers(before: RowVersions, after: RowVersions) -> dict[str, set[str]]:
    """Per table, the customers with a row the build wrote."""
    return {table: {customer for customer, _ in after[table] - before[table]} for table in after}


def _store_subscription_event(database_url: str, event_id: str, created: datetime) -> None:
    evt = event(event_id, "customer.subscription.updated", SUB_A1, created=created)
    with psycopg.connect(database_url) as conn:
        store_event(conn, evt, snapshot_at=AS_OF)


def _oldest_event(database_url: str) -> datetime:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select min(created) from stripe_raw.events").fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0].astimezone(UTC)


def test_an_older_event_recomputes_every_customer_in_every_mrr_model(
    database_url: str, tmp_path: Path
) -> None:
    create_raw_tables(database_url)
    insert_raw_dataset(database_url)

    def incremental_build() -> RowVersions:
        build(
            database_url, as_of=AS_OF, livemode=False, target_path=tmp_path, selector="incremental"
        )
        return _row_versions(database_url)

    incremental_build()
    settled = incremental_build()
    customers = {table: {customer for customer, _ in rows} for table, rows in settled.items()}
    # The small dataset's invoices carry no subscription period: int_mrr_invoice_periods is empty.
    assert all(len(customers[table]) > 3 for table in MRR_TABLES[1:]), customers
    # A build with nothing new rewrites the few customers a rule comes due for at as_of itself.
    idle = incremental_build()
    always = _rewritten_customers(settled, idle)
    assert all(len(always[table]) < len(customers[table]) / 2 for table in MRR_TABLES[1:])

    # A new event of one customer: that customer's rows, and no other's.
    _store_subscription_event(database_url, "evt_recent_a1", AS_OF - timedelta(hours=1))
    touched = incremental_build()
    rewritten = _rewritten_customers(idle, touched)
    assert all(rewritten[table] <= {SUB_A1["customer"]} | always[table] for table in MRR_TABLES), (
        rewritten
    )

    # An event older than every stored one: every customer's rows, in all five models.
    _store_subscription_event(
        database_url, "evt_backfilled_a1", _oldest_event(database_url) - timedelta(days=1)
    )
    skew_mrr_daily_day(database_url, AS_OF.date())  # so that its recomputed rows show
    skewed = _row_versions(database_url)
    full = incremental_build()
    rewritten = _rewritten_customers(skewed, full)
    assert rewritten == {table: customers[table] for table in MRR_TABLES}
    # Every row, too, but for mrr_daily's snapshot days, which are history (no build rewrites them).
    kept = {
        table: full[table] & skewed[table] for table in MRR_TABLES if table != "stripe.mrr_daily"
    }
    assert not any(kept.values()), kept
