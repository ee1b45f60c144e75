"""dbt build over a hand-made raw dataset: every cell of the marts and every segment's members."""

from __future__ import annotations

import pytest
from conftest import fetch_dicts
from dbt_raw_dataset import (
    CUSTOMER_FIELDS_COLUMNS,
    EXPECTED_CUSTOMER_FIELDS,
    EXPECTED_FEED,
    EXPECTED_SEGMENTS,
    EXPECTED_SYNC_HEALTH,
)

from orchestration.transform.runner import BuildResult

Warehouse = tuple[str, BuildResult]


def test_build_runs_models_unit_tests_and_data_tests(built_warehouse: Warehouse) -> None:
    _, result = built_warehouse
    assert result.success
    assert result.count("model") >= 31
    assert result.count("unit_test") > 0
    assert result.count("test") > 0
    assert not result.failures


def test_customer_fields_has_the_contract_columns_in_order(built_warehouse: Warehouse) -> None:
    url, _ = built_warehouse
    rows = fetch_dicts(
        url,
        "select column_name from information_schema.columns"
        " where table_schema = 'stripe' and table_name = 'customer_fields'"
        " order by ordinal_position",
    )
    assert [row["column_name"] for row in rows] == CUSTOMER_FIELDS_COLUMNS


def test_customer_fields_holds_exactly_the_expected_customers(built_warehouse: Warehouse) -> None:
    url, _ = built_warehouse
    rows = fetch_dicts(url, "select stripe_customer_id from stripe.customer_fields")
    # Neither the deleted customer (cus_Iv4n) nor the live-mode one (cus_L1ve).
    assert sorted(row["stripe_customer_id"] for row in rows) == sorted(EXPECTED_CUSTOMER_FIELDS)


@pytest.mark.parametrize("customer_id", sorted(EXPECTED_CUSTOMER_FIELDS))
def test_customer_fields_cells_match_hand_computed_values(
    built_warehouse: Warehouse, customer_id: str
) -> None:
    url, _ = built_warehouse
    rows = fetch_dicts(
        url,
        f"select * from stripe.customer_fields where stripe_customer_id = '{customer_id}'",
    )
    assert len(rows) == 1
    actual = rows[0]
    expected = EXPECTED_CUSTOMER_FIELDS[customer_id]
    assert set(expected) == set(CUSTOMER_FIELDS_COLUMNS), "expectation lists every column"
    mismatches = {
        column: (actual[column], expected[column])
        for column in CUSTOMER_FIELDS_COLUMNS
        if actual[column] != expected[column]
    }
    assert mismatches == {}


@pytest.mark.parametrize("segment", sorted(EXPECTED_SEGMENTS))
def test_segment_has_the_expected_members(built_warehouse: Warehouse, segment: str) -> None:
    url, _ = built_warehouse
    rows = fetch_dicts(url, f"select stripe_customer_id from stripe_segments.{segment}")
    assert sorted(row["stripe_customer_id"] for row in rows) == sorted(EXPECTED_SEGMENTS[segment])


@pytest.mark.parametrize("segment", sorted(EXPECTED_SEGMENTS))
def test_segment_rows_equal_their_customer_fields_rows(
    built_warehouse: Warehouse, segment: str
) -> None:
    url, _ = built_warehouse
    rows = fetch_dicts(
        url,
        f"select count(*) as differing from ("
        f" (select * from stripe_segments.{segment}"
        f"  except select * from stripe.customer_fields)"
        f" union all"
        f" (select * from stripe.customer_fields"
        f"  where stripe_customer_id in (select stripe_customer_id from stripe_segments.{segment})"
        f"  except select * from stripe_segments.{segment})"
        f") as differences",
    )
    assert rows[0]["differing"] == 0


def test_segment_memberships_unions_every_segment(built_warehouse: Warehouse) -> None:
    url, _ = built_warehouse
    rows = fetch_dicts(
        url, "select segment, stripe_customer_id from stripe_segments.segment_memberships"
    )
    actual = {(row["segment"], row["stripe_customer_id"]) for row in rows}
    expected = {
        (segment, member) for segment, members in EXPECTED_SEGMENTS.items() for member in members
    }
    assert len(rows) == len(actual)
    assert actual == expected


def test_customer_feed_maps_events_to_activities_with_summaries(built_warehouse: Warehouse) -> None:
    url, _ = built_warehouse
    rows = fetch_dicts(url, "select * from stripe.customer_feed")
    actual = {
        row["stripe_event_id"]: (
            row["stripe_customer_id"],
            row["activity"],
            row["summary"],
            row["occurred_at"],
        )
        for row in rows
    }
    assert len(rows) == len(actual)
    assert actual == EXPECTED_FEED


def test_customer_feed_keeps_stripe_event_types(built_warehouse: Warehouse) -> None:
    url, _ = built_warehouse
    rows = fetch_dicts(
        url, "select stripe_event_id, event_type from stripe.customer_feed order by stripe_event_id"
    )
    types = {row["stripe_event_id"]: row["event_type"] for row in rows}
    assert types["evt_C_trial"] == "customer.subscription.created"
    assert types["evt_B_trial_ended"] == "customer.subscription.updated"
    assert types["evt_A_inv_paid"] == "invoice.paid"


def test_sync_health_reports_each_object_of_the_current_mode(built_warehouse: Warehouse) -> None:
    url, _ = built_warehouse
    rows = fetch_dicts(url, "select * from stripe.sync_health")
    actual = {
        row["object"]: (row["status"], row["last_success_at"], row["last_error"], row["rows"])
        for row in rows
    }
    assert actual == EXPECTED_SYNC_HEALTH
    assert {row["customers_in_sync"] for row in rows} == {len(EXPECTED_CUSTOMER_FIELDS)}
    assert all(row["cursor_at"] == row["last_success_at"] for row in rows)


def test_mrr_states_keep_each_snapshots_discount_keys(built_warehouse: Warehouse) -> None:
    """state_object keeps the subscription's `discount` (the legacy single object) and `discounts`
    as each event's snapshot had them: int_mrr_subscription_state_discounts reads both."""
    url, _ = built_warehouse
    rows = fetch_dicts(
        url,
        "select states.stripe_event_id, states.state_object,"
        " events.data -> 'data' -> 'object' as snapshot"
        " from stripe_staging.int_mrr_subscription_states as states"
        " join stripe_raw.events as events on events.id = states.stripe_event_id",
    )
    assert rows
    for row in rows:
        snapshot = row["snapshot"]
        expected = {"discount": snapshot.get("discount"), "discounts": snapshot.get("discounts")}
        assert row["state_object"] == expected, row["stripe_event_id"]
    legacy = {row["stripe_event_id"] for row in rows if row["state_object"]["discount"]}
    assert "evt_B_legacy_expanded" in legacy, "sub_B1's legacy discount object is kept"
