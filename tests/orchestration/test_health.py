"""`stripe-sync status` reads the same facts the UI shows: sync_state, customers, last run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from orchestration.cli.status import read_health
from orchestration.core.settings import PROJECT_ROOT

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
