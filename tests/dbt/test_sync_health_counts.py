"""sync_health's customer counts follow customer_fields through incremental builds.

An incremental build does not count customer_fields: customer_fields' merge moves the totals it
keeps by the touched customers' rows (macro customer_counts). After random batches of changes
(customers created, updated and deleted; a switch to a live key and back), customers_in_sync and
the coupon_terms line must still equal a count of customer_fields.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from test_incremental_equivalence import T0, Account

from orchestration.extract import loader
from orchestration.transform.runner import build


def _counts(url: str) -> tuple[set[int], set[int], int, int]:
    """sync_health's counts (customers in sync; coupon_terms rows) and customer_fields' own."""
    with psycopg.connect(url) as conn:
        in_sync = {
            row[0] for row in conn.execute("select customers_in_sync from stripe.sync_health")
        }
        unreadable = {
            row[0]
            for row in conn.execute(
                "select rows from stripe.sync_health where object = 'coupon_terms'"
            )
        }
        customers, flagged = conn.execute(
            "select count(*), count(*) filter (where has_unreadable_discount)"
            " from stripe.customer_fields"
        ).fetchone()
    return in_sync, unreadable, customers, flagged


# Five dbt builds: longer than the suite's default timeout on a busy machine.
@pytest.mark.timeout(1200)
def test_sync_health_counts_equal_customer_fields_after_incremental_builds(
    database_factory: Callable[[], str], tmp_path: Path
) -> None:
    url = database_factory()
    with psycopg.connect(url, autocommit=True) as conn:
        loader.ensure_raw_tables(conn)
        # sync_health has a row per synced object: one object synced in each mode.
        conn.execute(
            "insert into stripe_raw.sync_state"
            " (object, livemode, account_id, status, last_success_at, rows)"
            " values ('customers', false, 'acct_test', 'ok', %s, 0),"
            " ('customers', true, 'acct_test', 'ok', %s, 0)",
            (T0, T0),
        )
    account = Account.with_customers(url, 17, customers=16, live=3)

    def build_and_check(step: str) -> None:
        build(
            url,
            as_of=account.now,
            livemode=account.livemode,
            target_path=tmp_path / "incremental",
            selector="incremental",
        )
        in_sync, unreadable, customers, flagged = _counts(url)
        assert in_sync == {customers}, f"{step}: customers_in_sync"
        assert unreadable == ({flagged} if flagged else set()), f"{step}: coupon_terms rows"

    build_and_check("first build")
    for step in ("changes", "more changes"):
        account.now += timedelta(hours=account.rng.uniform(6, 72))
        account.random_batch()
        account.random_batch()
        build_and_check(step)
    account.livemode = True
    account.now += timedelta(hours=2)
    account.random_batch()
    build_and_check("switch to live")
    account.livemode = False
    account.now += timedelta(days=1)
    account.random_batch()
    build_and_check("back to test")
