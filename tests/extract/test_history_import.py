"""History from day one (issue 17, item 5): a first import-existing sync also stores the events
Stripe still holds (its last 30 days) in stripe_raw.events, for history only. The incremental
replay that follows neither stores one twice nor lets an old event overwrite a newer object."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest

from orchestration.extract import sync_stripe
from orchestration.extract.progress import LABELS
from tests.emulator.conftest import sdk
from tests.extract.conftest import assert_matches_emulator, duplicate_count, raw_rows
from tests.helpers.stripe_shapes import ShapeDiff, compare
from tests.helpers.sync_process import backfill_done, kill_once_rows, start_sync

DAY = 86_400
RETENTION = 30 * DAY
# Stripe omits `quantity` on items of metered prices (tests/emulator/test_conformance.py).
MAY_BE_MISSING = {"event.data.object.items[].quantity"}


def listable_events(emu: Any, at: int) -> set[str]:
    """Ids of the test-mode events Stripe lists at emulator time `at`: its last 30 days."""
    return {i for i, e in emu.objects("events").items() if e["created"] >= at - RETENTION}


def stored_events(database_url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select id, data from stripe_raw.events where not livemode").fetchall()
    return dict(rows)


def cursor_second(database_url: str) -> int:
    """The `created` second of the events cursor the first sync took."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "select extract(epoch from e.created)::bigint from stripe_raw.sync_state as s"
            " join stripe_raw.events as e on e.id = s.cursor"
            " where s.object = 'events' and not s.livemode"
        ).fetchone()[0]


def test_first_import_existing_sync_stores_the_last_30_days_of_events(
    emulator_factory, database_url
) -> None:
    emu = emulator_factory(customers=300, seed=171)
    started = emu.now()
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    ended = emu.now()
    assert result.kind == "backfill"
    stored = stored_events(database_url)
    older = {i for i, e in emu.objects("events").items() if e["created"] < started - RETENTION}
    assert older, "the emulator holds no event older than 30 days: the cut-off is untested"
    # Every event Stripe still listed at the end is stored, and none it no longer listed at the
    # start (the emulator's clock runs during the sync).
    assert listable_events(emu, ended) <= stored.keys() <= listable_events(emu, started)
    assert not stored.keys() & older
    assert result.history_events > 0
    assert "past events stored" in result.summary()
    assert {"customer.created", "invoice.paid", "customer.subscription.created"} <= {
        e["type"] for e in stored.values()
    }
    assert_matches_emulator(database_url, emu)
    assert duplicate_count(database_url) == 0


def test_new_only_first_sync_imports_no_past_events(emulator_factory, database_url) -> None:
    emu = emulator_factory(customers=300, seed=172)
    result = sync_stripe(
        database_url, emu.test_key, api_base=emu.url, max_rps=1000, mode="new-only"
    )
    assert result.kind == "new-only"
    assert result.history_events == 0
    # At most the events of the cursor's own second are stored (events.start_cursor keeps them
    # so that the next replay's same-second sweep does not take them for missed ones): no
    # earlier one.
    second = cursor_second(database_url) if stored_events(database_url) else None
    assert all(e["created"] >= second for e in stored_events(database_url).values())


def test_incremental_after_history_neither_duplicates_nor_regresses_objects(
    emulator_factory, database_url
) -> None:
    emu = emulator_factory(customers=300, seed=173)
    # Ticks before the first sync: their events hold the object as it was then, and later ticks
    # change many of those objects again, so the history holds events older than the objects.
    emu.tick(steps=150)
    emu.advance_clock(3 * 3600)
    emu.tick(steps=150)
    first = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert first.kind == "backfill" and first.events_applied == 0
    assert_matches_emulator(database_url, emu)
    history = stored_events(database_url)
    subscriptions = raw_rows(database_url, "subscriptions")
    stale = [
        e
        for e in history.values()
        if e["type"].startswith("customer.subscription.")
        and e["data"]["object"]["id"] in subscriptions
        and e["data"]["object"]["status"] != subscriptions[e["data"]["object"]["id"]][0]["status"]
    ]
    assert stale, "no stored event is older than its object: the regression check is untested"

    emu.tick(steps=60)
    second = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert second.kind == "incremental" and second.history_events == 0
    assert second.events_applied > 0
    assert_matches_emulator(database_url, emu)
    assert duplicate_count(database_url) == 0
    after = stored_events(database_url)
    assert history.keys() <= after.keys()
    # The replay applied only what came after the cursor: the new events, each stored once.
    assert len(after) - len(history) == second.events_applied
    third = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert third.events_applied == 0
    assert stored_events(database_url).keys() == after.keys()


def test_killed_history_import_resumes_where_it_stopped(emulator_factory, database_url) -> None:
    # 20 ms per request and a 40 req/s budget stretch the import over a few seconds.
    emu = emulator_factory(customers=2000, seed=174, latency_ms=20)
    truth = listable_events(emu, emu.now())
    hits = 0
    for _ in range(3):
        proc = start_sync(database_url, emu, max_rps=40)
        killed = kill_once_rows(proc, database_url, "events", len(truth) // 2, 0.2)
        if killed and backfill_done(database_url) is False:
            hits += 1
            break
    assert hits, "no kill landed mid-import; lengthen the import"
    partial = len(stored_events(database_url))
    assert 0 < partial < len(truth)
    emu.latency_ms = 0
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert result.kind == "resumed-backfill"
    stored = stored_events(database_url)
    assert listable_events(emu, emu.now()) <= stored.keys() <= truth | stored.keys()
    # Resumed, not restarted: this run read only what the killed one had not committed (and the
    # pages in flight when it was killed).
    assert result.history_events < len(truth) - partial // 2
    assert_matches_emulator(database_url, emu)
    assert duplicate_count(database_url) == 0


def test_backfill_progress_shows_the_events_phase(
    emulator_factory, database_url, caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator_factory(customers=100, seed=175)
    with caplog.at_level(logging.INFO, logger="stripe_sync.extract"):
        sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000, progress=True)
    lines = [r.getMessage() for r in caplog.records if "backfill imported" in r.getMessage()]
    assert lines and f"{LABELS['events']} " in lines[-1], lines


def test_progress_bar_has_an_events_task_on_a_terminal(
    emulator_factory, database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.progress import Progress

    descriptions: list[str] = []
    add_task = Progress.add_task

    def recording_add_task(self: Progress, description: str, *args: Any, **kwargs: Any) -> Any:
        descriptions.append(description)
        return add_task(self, description, *args, **kwargs)

    monkeypatch.setattr(Progress, "add_task", recording_add_task)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    emu = emulator_factory(customers=100, seed=176)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000, progress=True)
    assert LABELS["events"] in descriptions and "customers" in descriptions, descriptions


def test_emulator_history_events_are_stripe_shaped_snapshots_of_their_time(
    emulator_factory,
) -> None:
    # What the import stores must look like Stripe's own: events of the last 30 days whose
    # object is the state at the event (a subscription created trialing that is active now),
    # and a trial's end as customer.subscription.updated with previous_attributes.
    emulator = emulator_factory(customers=300, seed=177)
    client = sdk(emulator)
    events = list(client.v1.events.list({"limit": 100}).auto_paging_iter())
    diff = ShapeDiff()
    for event in events:
        diff += compare("event", event.to_dict())
    assert not diff.stale and not diff.missing - MAY_BE_MISSING, diff
    assert all(e.created >= emulator.now() - RETENTION for e in events)
    subscriptions = emulator.objects("subscriptions")
    created = [e for e in events if e.type == "customer.subscription.created"]
    assert all(e.data.object.canceled_at is None for e in created)
    assert any(
        e.data.object.status != subscriptions[e.data.object.id]["status"]
        for e in created
        if e.data.object.id in subscriptions
    )
    ended = [e for e in events if e.type == "customer.subscription.updated"]
    assert ended, "no trial ended within the last 30 days"
    for event in ended:
        assert event.data.previous_attributes.status == "trialing"
        assert event.data.object.status in ("active", "paused")
        assert event.created == subscriptions[event.data.object.id]["trial_end"]
