"""Incremental syncs from the events API: ticks, deletes, retention, new-only, test→live."""

from __future__ import annotations

import logging
from collections import Counter

import psycopg
import pytest

from orchestration.extract import events as extract_events
from orchestration.extract import sync_stripe
from orchestration.extract.client import StripeApi
from orchestration.extract.events import apply_events, read_events
from tests.extract.conftest import (
    assert_matches_emulator,
    assert_only_preflight_listed,
    duplicate_count,
    list_requests,
    raw_rows,
)

DAY = 86_400


def test_incremental_applies_ticks_reading_only_events(emulator_factory, database_url) -> None:
    emu = emulator_factory(customers=300, seed=21)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    emu.tick(steps=40)  # creates, updates, cancellations, deletions
    before = list_requests(emu)
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert result.kind == "incremental"
    assert result.events_applied > 0
    assert_only_preflight_listed(before, list_requests(emu))
    assert_matches_emulator(database_url, emu)
    assert duplicate_count(database_url) == 0


def test_deleted_objects_are_flagged_and_kept(emulator_factory, database_url) -> None:
    emu = emulator_factory(customers=300, seed=22)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    emu.tick(steps=200)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    gone = emu.deleted_ids("customers")
    rows = raw_rows(database_url, "customers")
    flagged = {i for i, (_, deleted) in rows.items() if deleted}
    assert gone & rows.keys(), "the ticks deleted no synced customer; raise steps"
    assert flagged == gone & rows.keys()


def test_cursor_past_retention_runs_a_fresh_backfill(
    emulator_factory, database_url, caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator_factory(customers=200, seed=23)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    emu.advance_clock(31 * DAY)
    emu.tick(steps=20)
    with caplog.at_level(logging.WARNING, logger="stripe_sync.extract"):
        result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert result.kind == "re-backfill"
    assert any("30-day" in r.getMessage() or "retention" in r.getMessage() for r in caplog.records)
    assert_matches_emulator(database_url, emu)


def test_new_only_mode_imports_nothing_then_whole_touched_customers(
    emulator_factory, database_url
) -> None:
    emu = emulator_factory(customers=300, seed=24)
    first = sync_stripe(database_url, emu.test_key, api_base=emu.url, mode="new-only")
    assert first.kind == "new-only"
    assert first.total_objects == 0
    emu.tick(steps=40)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, mode="new-only")
    customers = {
        i for i, (_, deleted) in raw_rows(database_url, "customers").items() if not deleted
    }
    assert customers, "the ticks touched no customer"
    truth_subs = emu.objects("subscriptions", all_items=True)
    stored_subs = raw_rows(database_url, "subscriptions")
    for sub_id, sub in truth_subs.items():
        if sub["customer"] in customers:
            assert stored_subs[sub_id][0] == sub
    assert len(customers) < len(emu.objects("customers"))


def test_test_then_live_keeps_separate_state(emulator_factory, database_url) -> None:
    emu = emulator_factory(customers=100, seed=25)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    live = sync_stripe(database_url, emu.live_key, api_base=emu.url, max_rps=1000)
    assert live.livemode is True
    assert live.kind == "backfill"
    assert_matches_emulator(database_url, emu, livemode=False)
    assert_matches_emulator(database_url, emu, livemode=True)
    with psycopg.connect(database_url) as conn:
        modes = conn.execute(
            "select livemode, count(*) from stripe_raw.sync_state group by livemode order by 1"
        ).fetchall()
    assert modes == [(False, 8), (True, 8)]


def test_apply_events_never_lets_an_older_event_overwrite_newer_state(
    emulator_factory, database_url
) -> None:
    emu = emulator_factory(customers=100, seed=26)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    emu.tick(steps=30)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    with psycopg.connect(database_url) as conn:
        events = [
            row[0]
            for row in conn.execute(
                "select data from stripe_raw.events where type like 'customer.%'"
                " order by created, id"
            )
        ]
        assert events, "no customer events to replay"
        client = StripeApi(emu.test_key, emu.url, max_rps=1000)
        apply_events(conn, client, list(reversed(events)))  # webhooks: any order, late
    assert_matches_emulator(database_url, emu)


def test_a_refetch_stamped_by_a_lagging_date_header_still_replaces_older_state(
    emulator_factory, database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Webhooks deliver one event at a time, and an object's second event in one second is
    re-read (the stored stamp is ambiguous). Stripe's Date header can lag its event clock: the
    re-read must still count as at least as new as the event that caused it, or it is dropped and
    the row keeps an older state for good. Here the lag is an hour (the emulator's clock moved
    ahead, and a fresh client has not learned that from the events API). With Date an hour
    behind, every re-fetch is read again after REREAD_DELAY: cut here, where stamps are what is
    tested, or the test waits a second per event."""
    monkeypatch.setattr(extract_events, "REREAD_DELAY", 0.0)
    emu = emulator_factory(customers=200, seed=27)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    emu.advance_clock(3600)
    emu.date_lag = 3600  # the Date header an hour behind the clock its events are stamped by
    emu.tick(steps=60)
    reader = StripeApi(emu.test_key, emu.url, max_rps=1000)
    events = [e for page, _, _ in read_events(reader, None, None) for e in page]
    events = [e for e in events if not e["livemode"]]
    touched = Counter(object_id for e in events for object_id in _object_ids(e))
    assert max(touched.values()) > 1, "no object changed twice: the race cannot happen"
    lagging = StripeApi(emu.test_key, emu.url, max_rps=1000)  # has read no event: skew 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        for event in events:  # oldest first, one delivery each
            apply_events(conn, lagging, [event])
    assert_matches_emulator(database_url, emu)


def _object_ids(event: dict) -> list[str]:
    obj = event["data"]["object"]
    return [obj["id"]] if obj.get("id") else []
