"""The same Stripe account gives the same fields, feed and segments on every supported API version.

One seeded emulator account is synced and built once per API-version family: lists and
re-fetches at that version (STRIPE_API_VERSION), events and webhook-style deliveries in the
account's default version, as Stripe sends them. Every column of every row of the tables users
read must match across versions, except `customer_last_sync_at` (when our sync wrote the row:
wall time, different on each run by nature).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from orchestration.core.api_versions import PINNED_VERSION
from orchestration.core.warehouse import with_database
from orchestration.emulator import Emulator, start_emulator
from orchestration.extract import sync_stripe
from orchestration.extract.client import StripeApi
from orchestration.extract.events import apply_events, read_events
from orchestration.extract.objects import EVENTS_PERMISSION, OBJECTS
from orchestration.transform.runner import build
from tests.conftest import _create_database, _drop_database
from tests.dbt.conftest import fetch_dicts

VERSIONS = ["2024-06-20", "2025-03-31.basil", "2025-09-30.clover", PINNED_VERSION]
NOW = 1_790_000_000  # the emulator's fixed clock: every run sees the same account
AS_OF = datetime.fromtimestamp(NOW + 3 * 86_400, tz=UTC)
TABLES = {
    "stripe.customer_fields": "stripe_customer_id",
    "stripe.customer_feed": "stripe_event_id",
    "stripe_segments.segment_memberships": "segment, stripe_customer_id",
    "stripe_segments.current_trials": "stripe_customer_id",
    "stripe_segments.customers": "stripe_customer_id",
    "stripe_segments.churned_customers": "stripe_customer_id",
    "stripe_segments.slipping_customers": "stripe_customer_id",
    "stripe_segments.past_due_subscriptions": "stripe_customer_id",
}
RUN_DEPENDENT = {"customer_last_sync_at"}


def _sync_and_build(
    emu: Emulator, database_url: str, version: str, target: Path, key: str | None = None
) -> dict[str, list[dict[str, object]]]:
    """Backfill at the version, then changes by the events API and by webhook-style delivery."""
    key = key or emu.test_key
    sync_stripe(database_url, key, api_base=emu.url, max_rps=1000, api_version=version)
    # Time passes between the syncs and the changes, as on Stripe (the clock is fixed otherwise).
    emu.advance_clock(10)
    emu.tick(steps=40)
    emu.advance_clock(10)
    sync_stripe(database_url, key, api_base=emu.url, max_rps=1000, api_version=version)
    with psycopg.connect(database_url) as conn:
        cursor = conn.execute(
            "select cursor from stripe_raw.sync_state where object = 'events' and not livemode"
        ).fetchone()[0]
    emu.advance_clock(10)
    emu.tick(steps=20)
    emu.advance_clock(10)
    client = StripeApi(key, emu.url, max_rps=1000, api_version=version)
    events = [e for page, _, _ in read_events(client, cursor, None) for e in page]
    assert events, "the ticks made no event to deliver"
    with psycopg.connect(database_url, autocommit=True) as conn:
        for event in events:  # one delivery each, oldest first, as webhooks bring them
            apply_events(conn, client, [event])
    # Every unit and data test runs on the pinned version's build and on the restricted key's;
    # the other versions' tables must equal the pinned one's row for row, so their builds are the
    # production one (selector `incremental`: every model, the reader_guard checks).
    every_test = version == PINNED_VERSION
    build(
        database_url,
        as_of=AS_OF,
        livemode=False,
        target_path=target,
        selector=None if every_test else "incremental",
    )
    return {
        table: [
            {k: v for k, v in row.items() if k not in RUN_DEPENDENT}
            for row in fetch_dicts(database_url, f"select * from {table} order by {order}")
        ]
        for table, order in TABLES.items()
    }


def _build_at(
    server_url: str, target: Path, version: str, permissions: set[str] | None = None
) -> dict[str, list[dict[str, object]]]:
    """The account's tables synced at a version, with a full key or a restricted one."""
    name = _create_database(server_url, "stripe_sync_test")
    try:
        with start_emulator(customers=160, seed=42, now=NOW, api_version=version) as emu:
            key = emu.restricted_key(permissions) if permissions is not None else None
            return _sync_and_build(emu, with_database(server_url, name), version, target, key)
    finally:
        _drop_database(server_url, name)


@pytest.fixture(scope="module")
def tables_by_version(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, dict[str, list[dict[str, object]]]]]:
    """The user-facing tables of one account, synced and built at each API version."""
    out = {}
    for version in VERSIONS:
        out[version] = _build_at(server_url, tmp_path_factory.mktemp("dbt_target"), version)
    yield out


def test_the_account_covers_what_versions_change(tables_by_version: dict) -> None:
    """Coupons of every kind on revenue-earning subscriptions (once, repeating, forever; percent
    and amount off; an amount in a zero-decimal currency), a customer-level discount, and a
    subscription past 10 items are in the data."""
    with start_emulator(customers=160, seed=42, now=NOW) as emu:
        subs = emu.objects("subscriptions")
        customers = emu.objects("customers")
        coupons = emu.objects("coupons")
        used = [
            coupons[_coupon_of(emu, s)]
            for s in subs.values()
            if s["discounts"] and s["status"] in ("active", "past_due")
        ]
    assert {c["duration"] for c in used} == {"once", "repeating", "forever"}
    assert any(c["percent_off"] for c in used) and any(c["amount_off"] for c in used)
    assert any(c["currency"] == "jpy" for c in used), "no zero-decimal amount-off coupon"
    assert any(c.get("discount") for c in customers.values()), "no customer-level discount"
    assert any(s["items"]["total_count"] > 10 for s in subs.values()), "no sub past 10 items"
    fields = tables_by_version[PINNED_VERSION]["stripe.customer_fields"]
    assert any(row["customer_mrr"] for row in fields)


def _coupon_of(emu: Emulator, sub: dict) -> str:
    discount = emu.account.discount_of(sub, sub["discounts"][0], emu.account.shape)
    return discount["source"]["coupon"]


@pytest.mark.parametrize("version", VERSIONS[:-1])
def test_every_version_gives_the_pinned_versions_tables(
    tables_by_version: dict, version: str
) -> None:
    expected = tables_by_version[PINNED_VERSION]
    actual = tables_by_version[version]
    for table in TABLES:
        assert len(actual[table]) == len(expected[table]), table
        for got, want in zip(actual[table], expected[table], strict=True):
            assert got == want, f"{table} differs at {version}"


def test_without_coupons_read_customers_are_flagged_never_silently_overstated(
    server_url: str, tmp_path_factory: pytest.TempPathFactory, tables_by_version: dict
) -> None:
    required = {spec.permission for spec in OBJECTS} | {EVENTS_PERMISSION}
    target = tmp_path_factory.mktemp("dbt_target")
    restricted = _build_at(server_url, target, PINNED_VERSION, required)["stripe.customer_fields"]
    full = {
        r["stripe_customer_id"]: r
        for r in tables_by_version[PINNED_VERSION]["stripe.customer_fields"]
    }
    flagged = [r for r in restricted if r["has_unreadable_discount"]]
    assert flagged, "no customer's MRR depends on a coupon: the case is not exercised"
    assert not any(r["has_unreadable_discount"] for r in full.values())
    for row in restricted:
        exact = full[row["stripe_customer_id"]]["customer_mrr"]
        if row["has_unreadable_discount"]:
            assert row["customer_mrr"] >= exact  # the discount left out, and said so
        else:
            assert row["customer_mrr"] == exact
    assert any(r["customer_mrr"] > full[r["stripe_customer_id"]]["customer_mrr"] for r in flagged)
