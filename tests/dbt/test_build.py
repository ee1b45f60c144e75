"""transform.build: reproducible, incremental feed, modes, empty database, failures."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from conftest import create_raw_tables, fetch_dicts
from dbt_raw_dataset import AS_OF, EXPECTED_CUSTOMER_FIELDS, EXPECTED_FEED, insert_raw_dataset

from orchestration.core.errors import BuildError
from orchestration.transform.runner import AS_OF_ENV, as_of_env, build, dbt_vars

CONTRACT_TABLES = [
    "stripe.customer_fields",
    "stripe.customer_feed",
    "stripe.sync_health",
    "stripe_segments.syncing_with_stripe",
    "stripe_segments.current_trials",
    "stripe_segments.slipping_trials",
    "stripe_segments.slipping_customers",
    "stripe_segments.expired_trials",
    "stripe_segments.customers",
    "stripe_segments.churned_customers",
    "stripe_segments.past_due_subscriptions",
    "stripe_segments.segment_memberships",
]


def snapshot(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every contract table, sorted, as plain tuples."""
    tables: dict[str, list[tuple[object, ...]]] = {}
    with psycopg.connect(database_url) as conn:
        for table in CONTRACT_TABLES:
            rows = conn.execute(f"select * from {table}").fetchall()
            tables[table] = sorted(rows, key=repr)
    return tables


def test_build_twice_with_the_same_as_of_gives_identical_tables(
    database_url: str, tmp_path: Path
) -> None:
    create_raw_tables(database_url)
    insert_raw_dataset(database_url)
    build(database_url, as_of=AS_OF, livemode=False, target_path=tmp_path)
    first = snapshot(database_url)
    build(database_url, as_of=AS_OF, livemode=False, target_path=tmp_path)
    second = snapshot(database_url)
    assert first == second
    assert len(first["stripe.customer_fields"]) == len(EXPECTED_CUSTOMER_FIELDS)


def test_build_on_an_empty_warehouse_creates_raw_tables_and_empty_marts(
    database_url: str, tmp_path: Path
) -> None:
    result = build(database_url, as_of=AS_OF, livemode=False, target_path=tmp_path)
    assert result.success
    tables = snapshot(database_url)
    assert all(rows == [] for rows in tables.values())


def test_build_in_live_mode_shows_only_live_rows(database_url: str, tmp_path: Path) -> None:
    create_raw_tables(database_url)
    insert_raw_dataset(database_url)
    build(database_url, as_of=AS_OF, livemode=True, target_path=tmp_path)
    customers = fetch_dicts(database_url, "select stripe_customer_id from stripe.customer_fields")
    assert [row["stripe_customer_id"] for row in customers] == ["cus_L1ve"]
    health = fetch_dicts(database_url, "select object, status from stripe.sync_health")
    assert health == [{"object": "customers", "status": "ok"}]


def test_feed_switches_mode_and_forgets_deleted_customers(
    database_url: str, tmp_path: Path
) -> None:
    create_raw_tables(database_url)
    insert_raw_dataset(database_url)
    build(database_url, as_of=AS_OF, livemode=False, target_path=tmp_path)
    with psycopg.connect(database_url) as conn:
        # As the loader marks a deletion: with a new synced_at, which incremental builds follow.
        conn.execute(
            "update stripe_raw.customers set is_deleted = true, synced_at = now()"
            " where id = 'cus_Gr4ce'"
        )
    build(database_url, as_of=AS_OF, livemode=False, target_path=tmp_path)
    feed = fetch_dicts(database_url, "select stripe_event_id from stripe.customer_feed")
    expected = set(EXPECTED_FEED) - {"evt_G_deleted"}
    assert {row["stripe_event_id"] for row in feed} == expected

    build(database_url, as_of=AS_OF, livemode=True, target_path=tmp_path)
    feed = fetch_dicts(database_url, "select stripe_event_id from stripe.customer_feed")
    assert [row["stripe_event_id"] for row in feed] == ["evt_L_charge"]


def test_feed_is_incremental_on_the_event_id(database_url: str, tmp_path: Path) -> None:
    create_raw_tables(database_url)
    insert_raw_dataset(database_url)
    build(database_url, as_of=AS_OF, livemode=False, target_path=tmp_path)
    new_event = {
        "id": "evt_J_charge",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(AS_OF.timestamp()) - 60,
        "data": {
            "object": {
                "id": "ch_J1",
                "object": "charge",
                "amount": 1500,
                "currency": "eur",
                "customer": "cus_J0dy",
                "status": "succeeded",
            }
        },
        "livemode": False,
        "type": "charge.succeeded",
    }
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "insert into stripe_raw.events (id, livemode, created, data, snapshot_at, type,"
            " object_id) values ('evt_J_charge', false, now(), %s::jsonb, now(),"
            " 'charge.succeeded', 'ch_J1')",
            (json.dumps(new_event),),
        )
    build(database_url, as_of=AS_OF, livemode=False, target_path=tmp_path)
    rows = fetch_dicts(
        database_url,
        "select stripe_customer_id, activity, summary from stripe.customer_feed"
        " where stripe_event_id = 'evt_J_charge'",
    )
    assert rows == [
        {
            "stripe_customer_id": "cus_J0dy",
            "activity": "Charge succeeded",
            "summary": "Charge ch_J1 of €15.00 succeeded",
        }
    ]
    count = fetch_dicts(database_url, "select count(*) as n from stripe.customer_feed")
    assert count[0]["n"] == len(EXPECTED_FEED) + 1


def test_build_failure_raises_build_error_naming_the_failing_test(
    database_url: str, tmp_path: Path
) -> None:
    create_raw_tables(database_url)
    insert_raw_dataset(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update stripe_raw.subscriptions"
            " set data = jsonb_set(data, '{status}', '\"bogus\"') where id = 'sub_A1'"
        )
    with pytest.raises(BuildError) as failure:
        build(database_url, as_of=AS_OF, livemode=False, target_path=tmp_path)
    message = failure.value.one_line()
    assert "\n" not in message
    assert "accepted_values" in message
    assert "subscription_status" in message


def test_as_of_without_timezone_is_refused() -> None:
    with pytest.raises(BuildError, match="timezone"):
        as_of_env(AS_OF.replace(tzinfo=None))


def test_vars_carry_the_mode_and_the_environment_carries_as_of_in_utc() -> None:
    assert json.loads(dbt_vars(livemode=True)) == {"livemode": True, "stale_after_hours": 24}
    assert json.loads(dbt_vars(livemode=False, stale_after_hours=6)) == {
        "livemode": False,
        "stale_after_hours": 6,
    }
    assert as_of_env(AS_OF) == {AS_OF_ENV: "2026-11-20T12:00:00+00:00"}
    assert as_of_env(None) == {AS_OF_ENV: ""}
