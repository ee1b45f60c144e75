"""Subscriptions with more than the 10 items Stripe embeds are stored with every item, whichever
path wrote them: backfill, incremental events, webhooks, or a later sync after a killed one."""

from __future__ import annotations

import copy
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from orchestration.emulator import Emulator
from orchestration.emulator.render import CURRENT_SHAPE
from orchestration.extract import items, sync_stripe
from orchestration.extract.client import StripeApi
from orchestration.extract.events import apply_events
from tests.extract.conftest import assert_matches_emulator, raw_rows


def wide_subscriptions(emu: Emulator) -> dict[str, dict[str, Any]]:
    """The emulator's subscriptions with more than 10 items, as retrieve returns them."""
    return {i: s for i, s in emu.objects("subscriptions").items() if s["items"]["has_more"]}


def change_item_quantity(emu: Emulator, sub_id: str, position: int, *, event: bool) -> str | None:
    """Adds 3 to the quantity of one item (0-based position) in the emulator, with Stripe's
    customer.subscription.updated event or, like a change whose event expired, without one.
    Returns the event id."""
    with emu.lock:
        sub = emu.account.store.get("subscriptions", sub_id)[0]
        before = copy.deepcopy(sub)
        sub["items"][position][2] += 3
        emu.account.save("subscriptions", sub)
        if not event:
            return None
        previous = {"items": emu.account.rendered("subscriptions", before, CURRENT_SHAPE)["items"]}
        evt = emu.account.event("customer.subscription.updated", "subscriptions", sub, previous)
        return evt["id"]


def store_as_stripe_sent(database_url: str, emu: Emulator, sub_id: str) -> None:
    """Puts a subscription back in stripe_raw as the list page carried it (10 items, has_more),
    which is what a backfill killed before its completing pass leaves."""
    embedded = emu.objects("subscriptions")[sub_id]["items"]
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update stripe_raw.subscriptions set data = jsonb_set(data, '{items}', %s)"
            " where id = %s",
            (Jsonb(embedded), sub_id),
        )


def test_backfill_stores_every_item(
    emulator_factory, database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator_factory(customers=300, seed=31)
    monkeypatch.setattr(items, "PAGE_SIZE", 7)  # several pages of /v1/subscription_items each
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    wide = wide_subscriptions(emu)
    assert wide, "the emulator made no subscription with more than 10 items"
    stored = raw_rows(database_url, "subscriptions")
    counts = []
    for sub_id, sub in wide.items():
        stored_items = stored[sub_id][0]["items"]
        assert stored_items["has_more"] is False
        assert len(stored_items["data"]) == stored_items["total_count"]
        assert stored_items["total_count"] == sub["items"]["total_count"] > 10
        # Stripe's embedded order first: item 1 stays "the first item".
        assert [i["id"] for i in stored_items["data"][:10]] == [
            i["id"] for i in sub["items"]["data"]
        ]
        counts.append(stored_items["total_count"])
    assert max(counts) >= 25
    assert_matches_emulator(database_url, emu)


def test_a_sync_completes_rows_a_killed_backfill_left(emulator_factory, database_url) -> None:
    emu = emulator_factory(customers=100, seed=32)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    sub_id = next(iter(wide_subscriptions(emu)))
    store_as_stripe_sent(database_url, emu, sub_id)
    assert raw_rows(database_url, "subscriptions")[sub_id][0]["items"]["has_more"] is True
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert result.kind == "incremental"
    assert_matches_emulator(database_url, emu)


def test_incremental_events_store_every_item(emulator_factory, database_url) -> None:
    emu = emulator_factory(customers=100, seed=33)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    sub_id = next(iter(wide_subscriptions(emu)))
    change_item_quantity(emu, sub_id, 14, event=True)  # an item past the embedded ten
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert result.kind == "incremental" and result.events_applied >= 1
    stored = raw_rows(database_url, "subscriptions")[sub_id][0]
    truth = emu.objects("subscriptions", all_items=True)[sub_id]
    assert stored == truth
    assert stored["items"]["data"][14]["quantity"] == truth["items"]["data"][14]["quantity"]
    assert_matches_emulator(database_url, emu)


def test_a_webhook_event_stores_every_item(emulator_factory, database_url) -> None:
    """Webhooks apply one event at a time through apply_events, without the sync's pass."""
    emu = emulator_factory(customers=100, seed=34)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    sub_id = next(iter(wide_subscriptions(emu)))
    store_as_stripe_sent(database_url, emu, sub_id)
    event_id = change_item_quantity(emu, sub_id, 12, event=True)
    client = StripeApi(emu.test_key, emu.url, max_rps=1000)
    event = client.get(f"/v1/events/{event_id}").data
    assert event["data"]["object"]["items"]["has_more"] is True  # as Stripe delivers it
    with psycopg.connect(database_url, autocommit=True) as conn:
        result = apply_events(conn, client, [event])
    assert result.written["subscriptions"] == 1
    stored = raw_rows(database_url, "subscriptions")[sub_id][0]
    assert stored == emu.objects("subscriptions", all_items=True)[sub_id]


def test_a_subscription_stripe_no_longer_knows_is_flagged_deleted(
    emulator_factory, database_url
) -> None:
    emu = emulator_factory(customers=50, seed=35)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    sub_id = next(iter(wide_subscriptions(emu)))
    store_as_stripe_sent(database_url, emu, sub_id)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into stripe_raw.subscriptions (id, livemode, created, data, snapshot_at)"
            " select 'sub_gone', livemode, created, data || '{\"id\": \"sub_gone\"}', snapshot_at"
            " from stripe_raw.subscriptions where id = %s",
            (sub_id,),
        )
        completed = items.complete_stored(conn, StripeApi(emu.test_key, emu.url, max_rps=1000))
    assert completed == 2
    rows = raw_rows(database_url, "subscriptions")
    gone, deleted = rows["sub_gone"]
    assert deleted and gone["items"]["has_more"] is True  # its last state, kept
    assert rows[sub_id] == (emu.objects("subscriptions", all_items=True)[sub_id], False)
