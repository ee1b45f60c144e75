"""Segment history, the change feed and its signed delivery, driven through the emulator's clock.

Named customers of a seeded emulator account (Pro monthly, 29.00 a seat), synced and built after
each step at the emulator's clock, the feed then delivered to two local receivers:

  B0  02:00  cyd (2 seats), dan (1 seat, a 25 % coupon ending at 20:00), eve: active since 01:00
  B1  04:00  03:00: ada and bob start trials (bob's ends at 12:00); cyd upgrades to 4 seats
  B2  13:00  10:00: ada converts, eve cancels, cyd downgrades to 1 seat; 12:00: bob's trial
             ends, still trialing (an expired trial)
  B3  23:00  20:00: dan's coupon ends (no event); 21:00: bob converts; 22:00: eve subscribes
             again (a reactivation)

The upgrade, the downgrade and the coupon's end move MRR but no segment. One receiver always
answers 200; the other answers 500 to the first POST of every third change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest

from orchestration.core.warehouse import with_database
from orchestration.delivery import Endpoint, RetryPolicy, deliver_changes, encode_change
from orchestration.emulator import start_emulator
from tests.conftest import _create_database, _drop_database
from tests.delivery.receiver import Receiver, serve
from tests.scenarios.story import Story, fetch_dicts, move_clock_to, sync_and_build

D0 = datetime(2026, 11, 9, tzinfo=UTC)  # a midnight UTC: the story fits in day 0


def at(hour: float) -> datetime:
    """A moment of the story, in hours after D0."""
    return D0 + timedelta(hours=hour)


B0, B1, B2, B3 = at(2), at(4), at(13), at(23)
SIGNED_UP, TRIALS_STARTED, CHANGED, BOB_TRIAL_END = at(1), at(3), at(10), at(12)
BOB_CONVERTED, EVE_BACK = at(21), at(22)
NAMES = ("ada", "bob", "cyd", "dan", "eve")
# No retry waits: the flaky receiver's second answer is decided by the test, not by time.
FAST = RetryPolicy(base_delay=0.0)


def flaky(change_id: int, seen: int) -> int:
    """500 the first time every third change arrives, 200 otherwise."""
    return 500 if change_id % 3 == 0 and seen == 0 else 200


@dataclass
class Scenario:
    """What each build left, and what the receivers got."""

    customer_ids: dict[str, str]
    always: Receiver  # answers 200
    flaky: Receiver  # answers 500 to the first POST of every third change
    as_of: dict[str, datetime] = field(default_factory=dict)
    history: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    feed: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    mrr: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    delivered_per_build: dict[str, list[int]] = field(default_factory=dict)

    def name_of(self, customer_id: object) -> str | None:
        return next((n for n, c in self.customer_ids.items() if c == customer_id), None)


@pytest.fixture(scope="module")
def scenario(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    name = _create_database(server_url, "stripe_sync_test")
    url = with_database(server_url, name)
    target = tmp_path_factory.mktemp("dbt_target")
    try:
        with (
            start_emulator(
                customers=12, seed=17, now=int(at(1).timestamp()), webhooks=False
            ) as emu,
            serve(Receiver(), "/always") as always,
            serve(Receiver(respond=flaky), "/flaky") as flaky_receiver,
        ):
            story = Story(emu)
            out = Scenario(story.customer_ids, always, flaky_receiver)
            endpoints = [Endpoint(r.url, r.secret) for r in (always, flaky_receiver)]

            def record(build_name: str, when: datetime, *, every_test: bool = False) -> None:
                move_clock_to(emu, when)
                out.as_of[build_name] = sync_and_build(emu, url, target, every_test=every_test)
                out.history[build_name] = fetch_dicts(
                    url,
                    "select * from stripe_segments.segment_membership_history"
                    " order by stripe_customer_id, segment, entered_at",
                )
                out.feed[build_name] = fetch_dicts(
                    url, "select * from stripe_segments.segment_changes order by change_id"
                )
                out.mrr[build_name] = {
                    str(row["stripe_customer_id"]): Decimal(str(row["customer_mrr"]))
                    for row in fetch_dicts(
                        url, "select stripe_customer_id, customer_mrr from stripe.customer_fields"
                    )
                }
                before = len(always.delivered_ids())
                for endpoint in endpoints:
                    result = deliver_changes(url, endpoint, policy=FAST, sleep=lambda _: None)
                    assert result.pending == 0 and not result.failed, result
                out.delivered_per_build[build_name] = always.delivered_ids()[before:]

            for who, seats, coupon in (("cyd", 2, None), ("dan", 1, 19 * 3600), ("eve", 1, None)):
                story.subscribe(who, seats, coupon_seconds=coupon)
            record("B0", B0)
            move_clock_to(emu, TRIALS_STARTED)
            story.subscribe("ada", 1, trial_seconds=86_400)
            story.subscribe("bob", 1, trial_seconds=9 * 3600)
            story.change_seats("cyd", 4)
            record("B1", B1)
            move_clock_to(emu, CHANGED)
            story.convert("ada")
            story.cancel("eve")
            story.change_seats("cyd", 1)
            record("B2", B2)
            move_clock_to(emu, BOB_CONVERTED)
            story.convert("bob")
            move_clock_to(emu, EVE_BACK)
            story.subscribe("eve", 1)
            record("B3", B3, every_test=True)  # the last build runs every dbt test
            yield out
    finally:
        _drop_database(server_url, name)


def _stays(scenario: Scenario, build_name: str, who: str) -> dict[str, list[tuple[object, ...]]]:
    """The customer's stays per segment: (entered_at, exited_at, changed_at)."""
    out: dict[str, list[tuple[object, ...]]] = {}
    for row in scenario.history[build_name]:
        if row["stripe_customer_id"] == scenario.customer_ids.get(who):
            stay = (row["entered_at"], row["exited_at"], row["changed_at"])
            out.setdefault(str(row["segment"]), []).append(stay)
    return out


def _new_changes(scenario: Scenario, build_name: str) -> set[tuple[object, ...]]:
    """The story customers' changes a build added: (segment, name, change, changed_at)."""
    names = list(scenario.feed)
    previous = names[names.index(build_name) - 1] if names.index(build_name) else None
    known = len(scenario.feed[previous]) if previous else 0
    rows = scenario.feed[build_name][known:]
    assert {row["detected_at"] for row in rows} <= {scenario.as_of[build_name]}
    return {
        (
            row["segment"],
            scenario.name_of(row["stripe_customer_id"]),
            row["change"],
            row["changed_at"],
        )
        for row in rows
        if scenario.name_of(row["stripe_customer_id"])
    }


def test_the_pipeline_ran_at_the_emulators_clock(scenario: Scenario) -> None:
    assert scenario.as_of == {"B0": B0, "B1": B1, "B2": B2, "B3": B3}
    assert set(scenario.customer_ids) == set(NAMES)


def test_each_stay_has_its_entry_exit_and_real_moment(scenario: Scenario) -> None:
    assert _stays(scenario, "B3", "ada") == {
        "syncing_with_stripe": [(B1, None, TRIALS_STARTED)],
        "current_trials": [(B1, B2, CHANGED)],
        "customers": [(B2, None, CHANGED)],
    }
    assert _stays(scenario, "B3", "bob") == {
        "syncing_with_stripe": [(B1, None, TRIALS_STARTED)],
        "current_trials": [(B1, B3, BOB_CONVERTED)],
        "expired_trials": [(B2, B3, BOB_CONVERTED)],
        "customers": [(B3, None, BOB_CONVERTED)],
    }
    assert _stays(scenario, "B3", "eve") == {
        "syncing_with_stripe": [(B0, None, SIGNED_UP)],
        "customers": [(B0, B2, CHANGED), (B3, None, EVE_BACK)],
        "churned_customers": [(B2, B3, EVE_BACK)],
    }
    for who in ("cyd", "dan"):
        assert _stays(scenario, "B3", who) == {
            "syncing_with_stripe": [(B0, None, SIGNED_UP)],
            "customers": [(B0, None, SIGNED_UP)],
        }


def test_an_expired_trial_enters_at_its_trial_end(scenario: Scenario) -> None:
    assert _stays(scenario, "B2", "bob")["expired_trials"] == [(B2, None, BOB_TRIAL_END)]
    assert _stays(scenario, "B1", "bob")["current_trials"] == [(B1, None, TRIALS_STARTED)]


def test_closed_stays_never_change_in_later_builds(scenario: Scenario) -> None:
    builds = list(scenario.history)
    for earlier, later in pairwise(builds):
        after = {
            (r["segment"], r["stripe_customer_id"], r["entered_at"]): r
            for r in scenario.history[later]
        }
        assert len(after) == len(scenario.history[later]), "a stay is duplicated"
        for row in scenario.history[earlier]:
            kept = after[(row["segment"], row["stripe_customer_id"], row["entered_at"])]
            if row["exited_at"] is not None:
                assert kept == row


def test_each_build_adds_the_storys_changes_with_their_moments(scenario: Scenario) -> None:
    # Where Stripe tells the moment: customer.created, customer.subscription.created.
    assert _new_changes(scenario, "B0") == {
        (segment, who, "entered", SIGNED_UP)
        for who in ("cyd", "dan", "eve")
        for segment in ("syncing_with_stripe", "customers")
    }
    assert _new_changes(scenario, "B1") == {
        ("syncing_with_stripe", "ada", "entered", TRIALS_STARTED),
        ("current_trials", "ada", "entered", TRIALS_STARTED),
        ("syncing_with_stripe", "bob", "entered", TRIALS_STARTED),
        ("current_trials", "bob", "entered", TRIALS_STARTED),
    }
    assert _new_changes(scenario, "B2") == {
        ("current_trials", "ada", "exited", CHANGED),
        ("customers", "ada", "entered", CHANGED),
        ("expired_trials", "bob", "entered", BOB_TRIAL_END),
        ("customers", "eve", "exited", CHANGED),
        ("churned_customers", "eve", "entered", CHANGED),
    }
    assert _new_changes(scenario, "B3") == {
        ("current_trials", "bob", "exited", BOB_CONVERTED),
        ("expired_trials", "bob", "exited", BOB_CONVERTED),
        ("customers", "bob", "entered", BOB_CONVERTED),
        ("churned_customers", "eve", "exited", EVE_BACK),
        ("customers", "eve", "entered", EVE_BACK),
    }


def test_upgrades_downgrades_and_a_coupons_end_move_mrr_to_the_cent(scenario: Scenario) -> None:
    cyd, dan = scenario.customer_ids["cyd"], scenario.customer_ids["dan"]
    assert [scenario.mrr[b][cyd] for b in scenario.mrr] == [
        Decimal("58.00"),
        Decimal("116.00"),
        Decimal("29.00"),
        Decimal("29.00"),
    ]
    assert [scenario.mrr[b][dan] for b in scenario.mrr] == [Decimal("21.75")] * 3 + [
        Decimal("29.00")
    ]
    # No segment change: their only changes are the first build's entries.
    theirs = [row for row in scenario.feed["B3"] if row["stripe_customer_id"] in (cyd, dan)]
    assert len(theirs) == 4 and {row["detected_at"] for row in theirs} == {B0}


def test_a_poller_after_n_sees_no_gap_and_no_repeat(scenario: Scenario) -> None:
    """A tool polling "change_id > last" after every build."""
    last, seen = 0, []
    previous: list[dict[str, object]] = []
    for rows in scenario.feed.values():
        assert rows[: len(previous)] == previous, "a change was renumbered or rewritten"
        new = [int(str(row["change_id"])) for row in rows if int(str(row["change_id"])) > last]
        assert new == list(range(last + 1, last + 1 + len(new))), "a gap or a reorder"
        seen += new
        last = new[-1] if new else last
        previous = rows
    assert len(seen) == len(set(seen)) == len(scenario.feed["B3"])
    counts = [len(rows) for rows in scenario.feed.values()]
    assert counts == sorted(set(counts)), "a build added no change"


def test_a_receiver_answering_2xx_gets_every_change_exactly_once(scenario: Scenario) -> None:
    feed = scenario.feed["B3"]
    receiver = scenario.always
    assert receiver.unsigned == 0
    assert receiver.received_ids() == [row["change_id"] for row in feed]
    assert all(d.attempt == 1 and d.status == 200 for d in receiver.deliveries)
    # Each POST is the feed row, exactly as encoded.
    assert [d.body for d in receiver.deliveries] == [json.loads(encode_change(r)) for r in feed]
    # Each run delivered what its build added.
    builds = list(scenario.feed)
    for i, build_name in enumerate(builds):
        before = len(scenario.feed[builds[i - 1]]) if i else 0
        added = [row["change_id"] for row in scenario.feed[build_name][before:]]
        assert scenario.delivered_per_build[build_name] == added


def test_a_receiver_answering_500_once_gets_duplicates_only_on_retry(scenario: Scenario) -> None:
    feed_ids = [int(str(row["change_id"])) for row in scenario.feed["B3"]]
    receiver = scenario.flaky
    assert receiver.unsigned == 0
    assert receiver.delivered_ids() == feed_ids
    expected: list[tuple[int, int, int]] = []
    for change_id in feed_ids:
        if change_id % 3 == 0:
            expected.append((change_id, 1, 500))
        expected.append((change_id, 2 if change_id % 3 == 0 else 1, 200))
    assert [(d.change_id, d.attempt, d.status) for d in receiver.deliveries] == expected
    retried = [d for d in receiver.deliveries if d.change_id % 3 == 0]
    assert retried and all(
        a.body == b.body for a, b in zip(retried[::2], retried[1::2], strict=True)
    )
