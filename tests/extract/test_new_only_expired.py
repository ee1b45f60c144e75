"""New-only mode when the events cursor outlived Stripe's 30-day event retention: the customers
already stored are refreshed whole, nothing else is imported, and the cursor restarts at now."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest

from orchestration.emulator import Emulator
from orchestration.extract import events, sync_stripe
from tests.extract.conftest import raw_rows
from tests.extract.test_subscription_items import change_item_quantity, wide_subscriptions

DAY = 86_400


def cursor_state(database_url: str) -> tuple[str | None, Any, Any]:
    """(cursor, cursor_at, refresh_progress) of the test mode's events row."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "select cursor, cursor_at, refresh_progress from stripe_raw.sync_state"
            " where object = 'events' and not livemode"
        ).fetchone()


def alive_customers(database_url: str) -> set[str]:
    return {i for i, (_, deleted) in raw_rows(database_url, "customers").items() if not deleted}


def change_without_event(emu: Emulator, customer_id: str, *, delete: bool = False) -> None:
    """A change whose event will have expired: the refresh is the only way to see it."""
    with emu.lock:
        customer = emu.account.store.get("customers", customer_id)[0]
        customer["email"] = f"changed.{customer_id.lower()}@example.org"
        emu.account.save("customers", customer, deleted=delete)


def rename_a_product(emu: Emulator) -> str:
    """An event that touches no customer; returns its id."""
    with emu.lock:
        product_id = sorted(emu.objects("products"))[0]
        product = emu.account.store.get("products", product_id)[0]
        before = {"name": product["name"]}
        product.update(name=product["name"] + " (renamed)", updated=emu.now())
        emu.account.save("products", product)
        return emu.account.event("product.updated", "products", product, before)["id"]


def new_only_account_past_retention(
    emulator_factory, database_url: str, seed: int
) -> tuple[Emulator, set[str], str, str]:
    """A new-only account whose stored customers (one owning a subscription with more than 10
    items) then changed for 31 days without a sync. Returns the emulator, the customers stored
    (not deleted) before the gap, the wide subscription's id and the newest event's id."""
    emu = emulator_factory(customers=300, seed=seed)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, mode="new-only", max_rps=1000)
    wide_id = next(iter(wide_subscriptions(emu)))
    change_item_quantity(emu, wide_id, 0, event=True)  # brings its customer in whole
    emu.tick(steps=40)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, mode="new-only", max_rps=1000)
    stored = alive_customers(database_url)
    wide_customer = emu.objects("subscriptions")[wide_id]["customer"]
    assert wide_customer in stored
    # The gap: changes whose events will have expired by the next sync.
    others = sorted(stored - {wide_customer})
    change_without_event(emu, others[0])
    change_without_event(emu, others[1], delete=True)
    change_item_quantity(emu, wide_id, 14, event=False)  # an item past the embedded ten
    emu.tick(steps=100)  # sign-ups and changes of customers never stored, among others
    emu.advance_clock(31 * DAY)
    newest = rename_a_product(emu)
    return emu, stored, wide_id, newest


def assert_stored_customers_are_current(
    database_url: str, emu: Emulator, stored: set[str], known: set[str]
) -> None:
    """The stored customers equal the emulator's (or are flagged deleted, as there), with every
    subscription; no other customer came in. `known`: every customer row before the refresh."""
    rows = raw_rows(database_url, "customers")
    assert set(rows) == known, "a customer never touched was imported, or a stored one lost"
    truth = emu.objects("customers")
    gone = emu.deleted_ids("customers")
    for customer_id, (data, deleted) in rows.items():
        if deleted:
            assert customer_id in gone
        else:
            assert data == truth[customer_id]
    alive = {i for i, (_, deleted) in rows.items() if not deleted}
    assert alive == stored - gone
    subs = raw_rows(database_url, "subscriptions")
    for sub_id, sub in emu.objects("subscriptions", all_items=True).items():
        if sub["customer"] in alive:
            assert subs[sub_id][0] == sub


def test_refreshes_stored_customers_and_restarts_the_cursor(
    emulator_factory, database_url, caplog: pytest.LogCaptureFixture
) -> None:
    emu, stored, wide_id, newest = new_only_account_past_retention(
        emulator_factory, database_url, seed=41
    )
    old_cursor, old_at, _ = cursor_state(database_url)
    known = set(raw_rows(database_url, "customers"))
    with caplog.at_level(logging.INFO, logger="stripe_sync.extract"):
        result = sync_stripe(
            database_url, emu.test_key, api_base=emu.url, mode="new-only", max_rps=1000
        )
    assert result.kind == "refresh"
    said = [r.getMessage() for r in caplog.records if "refreshing the customers" in r.getMessage()]
    assert len(said) == 1 and "30-day" in said[0], said
    assert_stored_customers_are_current(database_url, emu, stored, known)
    assert result.objects["customers"].deleted >= 1
    wide = raw_rows(database_url, "subscriptions")[wide_id][0]["items"]
    assert wide["has_more"] is False and len(wide["data"]) == wide["total_count"] > 14
    cursor, cursor_at, progress = cursor_state(database_url)
    assert cursor == newest != old_cursor
    assert (cursor_at - old_at).days >= 30
    assert progress is None
    # From there on, plain incremental syncs.
    again = sync_stripe(database_url, emu.test_key, api_base=emu.url, mode="new-only")
    assert again.kind == "incremental"


def test_a_killed_refresh_resumes_and_converges(
    emulator_factory, database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, stored, _, newest = new_only_account_past_retention(
        emulator_factory, database_url, seed=42
    )
    old_cursor, _, _ = cursor_state(database_url)
    known = set(raw_rows(database_url, "customers"))
    with psycopg.connect(database_url) as conn:  # the refresh's order: Postgres' collation
        fifth = conn.execute(
            "select id from stripe_raw.customers where not livemode and not is_deleted"
            " order by id offset 4 limit 1"
        ).fetchone()[0]
    monkeypatch.setattr(events, "REFRESH_BATCH", 5)
    whole = events._whole_customer
    calls = {"n": 0}

    def dies_in_the_second_batch(client, customer_id):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # the process is killed
        return whole(client, customer_id)

    monkeypatch.setattr(events, "_whole_customer", dies_in_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        sync_stripe(database_url, emu.test_key, api_base=emu.url, mode="new-only", max_rps=1000)
    cursor, _, progress = cursor_state(database_url)
    assert cursor == old_cursor, "the cursor moved before the refresh finished"
    assert progress["after"] == fifth  # the first batch is committed

    monkeypatch.setattr(events, "_whole_customer", whole)
    result = sync_stripe(
        database_url, emu.test_key, api_base=emu.url, mode="new-only", max_rps=1000
    )
    assert result.kind == "refresh"
    assert_stored_customers_are_current(database_url, emu, stored, known)
    cursor, _, progress = cursor_state(database_url)
    assert cursor == newest and progress is None
