"""Too many touched customers for index lookups (macros/customer_keyed.sql, many_touched): the
build recomputes every customer instead, as a full window does, and its tables equal a full
refresh. The threshold (touched² > 150 × customers) is lowered to 0 through the environment, so
the small dataset's one touched customer is "many"."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from conftest import create_raw_tables, skew_mrr_daily_day
from dbt_raw_dataset import AS_OF, SUB_A1, event, insert_raw_dataset, store_event

from orchestration.transform.runner import build

# Customer-keyed tables of every kind: an intermediate, a mart, a segment, the MRR history (its
# customer-keyed merge and its per-day one).
TABLES = [
    "stripe_staging.int_subscriptions_ranked_per_customer",
    "stripe.customer_fields",
    "stripe_segments.syncing_with_stripe",
    "stripe_staging.int_mrr_subscription_states",
    "stripe.mrr_daily",
    "stripe.mrr_movements",
]


def _versions(database_url: str) -> dict[str, dict[str, set[str]]]:
    """Per table, each customer's row versions (xmin: the transaction that wrote the row)."""
    found: dict[str, dict[str, set[str]]] = {}
    with psycopg.connect(database_url) as conn:
        for table in TABLES:
            rows = conn.execute(f"select stripe_customer_id, xmin::text from {table}").fetchall()
            for customer, version in rows:
                found.setdefault(table, {}).setdefault(str(customer), set()).add(str(version))
    return found


def _contents(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(database_url) as conn:
        return {
            table: sorted(
                conn.execute(f"select * from {table}").fetchall(), key=lambda row: repr(row)
            )
            for table in TABLES
        }


def _touch_one_customer(database_url: str) -> None:
    """A new subscription event of SUB_A1's customer, as a sync stores it."""
    created = AS_OF - timedelta(hours=1)
    evt = event("evt_many_touched", "customer.subscription.updated", SUB_A1, created=created)
    with psycopg.connect(database_url) as conn:
        store_event(conn, evt, snapshot_at=AS_OF)


def test_many_touched_customers_recompute_everyone(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_raw_tables(database_url)
    insert_raw_dataset(database_url)

    def incremental_build() -> None:
        build(
            database_url, as_of=AS_OF, livemode=False, target_path=tmp_path, selector="incremental"
        )

    incremental_build()
    incremental_build()
    skew_mrr_daily_day(database_url, AS_OF.date())  # so that its recomputed rows show
    before = _versions(database_url)
    assert all(len(before[table]) > 3 for table in TABLES), before

    _touch_one_customer(database_url)
    monkeypatch.setenv("STRIPE_SYNC_MANY_TOUCHED_FACTOR", "0")
    incremental_build()
    after = _versions(database_url)
    # Every customer's rows were written again (mrr_daily: its recomputed day, not its history).
    for table in TABLES:
        kept = {c for c in after[table] if after[table][c] <= before[table].get(c, set())}
        assert not kept, (table, sorted(kept))

    recomputed = _contents(database_url)
    monkeypatch.delenv("STRIPE_SYNC_MANY_TOUCHED_FACTOR")
    build(
        database_url,
        as_of=AS_OF,
        livemode=False,
        target_path=tmp_path,
        selector="incremental",
        full_refresh=True,
    )
    assert _contents(database_url) == recomputed
