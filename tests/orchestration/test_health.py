"""`stripe-sync status` reads the same facts the UI shows: sync_state, customers, last run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg

from orchestration.cli.status import read_health
from orchestration.core.settings import PROJECT_ROOT
from orchestration.defs.tags import SERIAL_TAGS

RAW_DDL = PROJECT_ROOT / "orchestration" / "extract" / "sql" / "create_raw_tables.sql"


def _prepare(url: str, *states: tuple[str, str, datetime | None, str | None]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_DDL.read_text())
        for name, status, last_success, error in states:
            conn.execute(
                "insert into stripe_raw.sync_state (object, livemode, account_id, status,"
                " last_success_at, last_error, rows) values (%s, false, 'acct_1', %s, %s, %s, 7)",
                (name, status, last_success, error),
            )
        conn.execute(
            "insert into stripe_raw.customers (id, livemode, created, data, snapshot_at)"
            " values ('cus_1', false, now(), '{}', now()), ('cus_2', true, now(), '{}', now())"
        )


def test_status_before_any_sync_says_so(database_url: str) -> None:
    health = read_health(database_url, livemode=False)
    assert not health.failed
    assert "no sync yet in test mode" in health.render()


def test_status_reports_lag_customers_and_last_error(database_url: str) -> None:
    recent = datetime.now(UTC) - timedelta(minutes=3)
    _prepare(
        database_url,
        ("customers", "ok", recent, None),
        ("events", "ok", recent - timedelta(hours=2), None),
    )
    health = read_health(database_url, livemode=False)
    assert not health.failed
    assert health.customers_in_sync == 1, "only the test-mode customer, before any build"
    assert 2 * 3600 <= health.lag_seconds < 2 * 3600 + 600
    text = health.render()
    assert "customers in sync: 1" in text
    assert "behind Stripe: 2 h" in text
    assert "last error: none" in text


def test_status_fails_when_the_last_sync_failed(database_url: str) -> None:
    _prepare(database_url, ("customers", "failed", None, "Stripe kept failing after 8 attempts"))
    health = read_health(database_url, livemode=False)
    assert health.failed
    assert "Stripe kept failing" in health.render()


def test_status_explains_what_its_row_counts_count(database_url: str) -> None:
    recent = datetime.now(UTC) - timedelta(minutes=3)
    _prepare(database_url, ("customers", "ok", recent, None), ("events", "ok", recent, None))
    text = read_health(database_url, livemode=False).render()
    header = text.splitlines()[1]
    assert header.split()[:4] == ["object", "status", "rows", "stored"]
    assert "events: Stripe's change log" in text
    assert "(0 until something changes in Stripe)" in text
    assert "customers in sync: 1 (stripe.customer_fields: not deleted, test mode)" in text


def test_status_calls_ok_stale_past_the_one_threshold(database_url: str) -> None:
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    _prepare(database_url, ("customers", "ok", three_hours_ago, None))
    within = read_health(database_url, livemode=False, stale_after=timedelta(hours=4))
    past = read_health(database_url, livemode=False, stale_after=timedelta(hours=2))
    assert [o.status for o in within.objects] == ["ok"]
    assert [o.status for o in past.objects] == ["stale"]


def test_status_reads_the_mart_once_built(database_url: str) -> None:
    _prepare(database_url, ("customers", "ok", datetime.now(UTC), None))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "create schema stripe; create table stripe.sync_health as select"
            " 'customers'::text as object, 'failed'::text as status, 7::bigint as rows,"
            " now() as last_success_at, now() as cursor_at, 'from the mart'::text as last_error"
        )
    health = read_health(database_url, livemode=False)
    assert health.failed
    assert "from the mart" in health.render()


def test_status_reads_the_last_run_from_the_dagster_instance(database_url: str) -> None:
    @dg.asset
    def probe() -> int:
        return 1

    with dg.DagsterInstance.ephemeral() as instance:
        assert read_health(database_url, livemode=False, instance=instance).last_run is None
        dg.materialize([probe], instance=instance, tags=SERIAL_TAGS)
        dg.materialize([probe], instance=instance)  # untagged: not a sync or build
        last_run = read_health(database_url, livemode=False, instance=instance).last_run
    assert last_run is not None
    assert last_run.status == "SUCCESS"
