"""Segment history and the change feed across builds: entries, exits, re-entries, real moments.

One scenario on hand-written raw rows, built at increasing as_of values (the raw rows change
between builds as a sync would write them):

  T1  ada trialing (trial ends T0 + 1.5 d), bob and cyd active.
  T2  cyd canceled (an update event at T0 + 12 h): leaves customers, enters churned_customers.
      Built twice at T2: the second build adds nothing.
  T3  ada's trial end passed, still trialing: enters expired_trials at the trial end. cyd
      reactivated (event at T0 + 1.75 d): leaves churned_customers, enters customers again (a
      second stay). dan is created, active.
      Built again at T3 after dan's cancellation: the time cannot stand still for dan's exit, which
      is recorded a microsecond after his entry.
  T4  built with --full-refresh: ada converted (event at T0 + 2.5 d), bob deleted (event at
      T0 + 2.75 d). Nothing recorded before is lost, renumbered or repeated.
  T5  built with a live key: a live customer enters; the test-mode stays are left open.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import create_raw_tables, fetch_dicts
from dbt_raw_dataset import (
    PRICE_PRO,
    PRODUCTS,
    customer,
    epoch,
    event,
    item,
    store_event,
    subscription,
)

from orchestration.core.settings import PROJECT_ROOT
from orchestration.core.warehouse import with_database
from orchestration.transform.runner import build
from tests.conftest import _create_database, _drop_database

T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


def at(days: float) -> datetime:
    """A moment of the scenario, in days after T0."""
    return T0 + timedelta(days=days)


T1, T2, T3, T4, T5 = at(0), at(1), at(2), at(3), at(4)
TRIAL_END = at(1.5)
CYD_CANCELED, CYD_REACTIVATED = at(0.5), at(1.75)
ADA_CONVERTED, BOB_DELETED = at(2.5), at(2.75)


def _customer(customer_id: str, created: datetime) -> dict[str, Any]:
    name = customer_id.removeprefix("cus_")
    return customer(customer_id, email=f"{name}@example.com", name=name.title(), created=created)


def _subscription(
    customer_id: str, status: str, created: datetime, trial_end: datetime | None = None
) -> dict[str, Any]:
    sub_id = customer_id.replace("cus_", "sub_")
    items = [item(f"si_{sub_id}", sub_id, PRICE_PRO, 1, period_start=created)]
    trial_start = created if trial_end else None
    return subscription(
        sub_id,
        customer_id,
        status,
        created=created,
        items=items,
        trial_start=trial_start,
        trial_end=trial_end,
    )


def _write(
    conn: psycopg.Connection,
    table: str,
    obj: dict[str, Any],
    synced: datetime,
    *,
    livemode: bool = False,
) -> None:
    """Upserts one raw row, as the loader would: synced_at is the write's own now(), which
    incremental builds follow (the scenario's time is the snapshot's)."""
    conn.execute(
        f"insert into stripe_raw.{table} (id, livemode, created, data, is_deleted, snapshot_at,"
        " synced_at) values (%s, %s, %s, %s::jsonb, %s, %s, now())"
        " on conflict (id) do update set data = excluded.data, is_deleted = excluded.is_deleted,"
        " snapshot_at = excluded.snapshot_at, synced_at = excluded.synced_at",
        (
            obj["id"],
            livemode,
            datetime.fromtimestamp(obj.get("created") or epoch(synced), UTC),
            json.dumps(obj),
            bool(obj.get("deleted")),
            synced,
        ),
    )


def _event(
    conn: psycopg.Connection,
    event_id: str,
    event_type: str,
    obj: dict[str, Any],
    created: datetime,
    previous_attributes: dict[str, Any] | None = None,
) -> None:
    evt = event(event_id, event_type, obj, created=created, previous_attributes=previous_attributes)
    store_event(conn, evt, snapshot_at=created)


def _activity(conn: psycopg.Connection, customer_id: str, occurred_at: datetime) -> None:
    conn.execute(
        "insert into stripe_raw.activity_events values (%s, null, %s)", (customer_id, occurred_at)
    )


def _initial_rows(url: str) -> None:
    """T1: ada trialing, bob and cyd active; customer.created for ada and cyd, and
    customer.subscription.created for ada and bob."""
    with psycopg.connect(url) as conn:
        _write(conn, "prices", PRICE_PRO, T1)
        for prod in PRODUCTS:
            _write(conn, "products", prod, T1)
        created = at(-0.5)
        for name in ("cus_ada", "cus_bob", "cus_cyd"):
            _write(conn, "customers", _customer(name, created), T1)
            _activity(conn, name, at(-0.25))
        ada_sub = _subscription("cus_ada", "trialing", created, trial_end=TRIAL_END)
        _write(conn, "subscriptions", ada_sub, T1)
        _write(conn, "subscriptions", _subscription("cus_bob", "active", created), T1)
        _write(conn, "subscriptions", _subscription("cus_cyd", "active", created), T1)
        _event(conn, "evt_ada_created", "customer.created", _customer("cus_ada", created), created)
        _event(conn, "evt_cyd_created", "customer.created", _customer("cus_cyd", created), created)
        _event(conn, "evt_ada_sub", "customer.subscription.created", ada_sub, created)
        bob_sub = _subscription("cus_bob", "active", created)
        _event(conn, "evt_bob_sub", "customer.subscription.created", bob_sub, created)


def _cyd_cancels(url: str) -> None:
    with psycopg.connect(url) as conn:
        canceled = _subscription("cus_cyd", "canceled", at(-0.5))
        _write(conn, "subscriptions", canceled, CYD_CANCELED)
        _event(
            conn,
            "evt_cyd_canceled",
            "customer.subscription.updated",
            canceled,
            CYD_CANCELED,
            {"status": "active"},
        )
        for name in ("cus_ada", "cus_bob", "cus_cyd"):
            _activity(conn, name, at(0.9))


def _trial_passes_cyd_returns_dan_arrives(url: str) -> None:
    with psycopg.connect(url) as conn:
        active = _subscription("cus_cyd", "active", at(-0.5))
        _write(conn, "subscriptions", active, CYD_REACTIVATED)
        _event(
            conn,
            "evt_cyd_back",
            "customer.subscription.updated",
            active,
            CYD_REACTIVATED,
            {"status": "canceled"},
        )
        _write(conn, "customers", _customer("cus_dan", at(1.9)), at(1.9))
        _write(conn, "subscriptions", _subscription("cus_dan", "active", at(1.9)), at(1.9))
        for name in ("cus_ada", "cus_bob", "cus_cyd"):
            _activity(conn, name, at(1.9))


def _dan_cancels_without_an_event(url: str) -> None:
    with psycopg.connect(url) as conn:
        canceled = _subscription("cus_dan", "canceled", at(1.9))
        _write(conn, "subscriptions", canceled, at(1.95))


def _ada_converts_bob_deleted(url: str) -> None:
    with psycopg.connect(url) as conn:
        converted = _subscription("cus_ada", "active", at(-0.5), trial_end=TRIAL_END)
        _write(conn, "subscriptions", converted, ADA_CONVERTED)
        _event(
            conn,
            "evt_ada_converted",
            "customer.subscription.updated",
            converted,
            ADA_CONVERTED,
            {"status": "trialing"},
        )
        deleted = {"id": "cus_bob", "object": "customer", "deleted": True}
        _write(conn, "customers", deleted, BOB_DELETED)
        _event(conn, "evt_bob_deleted", "customer.deleted", deleted, BOB_DELETED)
        for name in ("cus_ada", "cus_cyd", "cus_dan"):
            _activity(conn, name, at(2.9))


def _live_customer_arrives(url: str) -> None:
    """A live-mode customer: the key switches to live for T5."""
    with psycopg.connect(url) as conn:
        live = {**_customer("cus_liv", at(3.5)), "livemode": True}
        _write(conn, "customers", live, at(3.5), livemode=True)


HISTORY = (
    "select segment, stripe_customer_id, entered_at, exited_at, changed_at, livemode"
    " from stripe_segments.segment_membership_history"
    " order by stripe_customer_id, segment, entered_at"
)
CHANGES = "select * from stripe_segments.segment_changes order by change_id"


def _tables(url: str) -> dict[str, list[dict[str, object]]]:
    return {"history": fetch_dicts(url, HISTORY), "changes": fetch_dicts(url, CHANGES)}


@dataclass
class Scenario:
    """The scenario's database (alive during the tests) and its tables after each build."""

    url: str
    builds: dict[str, dict[str, list[dict[str, object]]]]


@pytest.fixture(scope="module")
def scenario(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """The history and feed after each build of the scenario, keyed by build name."""
    name = _create_database(server_url, "stripe_sync_test")
    url = with_database(server_url, name)
    target: Path = tmp_path_factory.mktemp("dbt_target")
    out: dict[str, dict[str, list[dict[str, object]]]] = {}
    # T1 to T3 are production builds (selector `incremental`: every model, the reader_guard
    # checks); T4 is the reconcile's (--full-refresh, every test) and T5, the only live-mode one,
    # runs every test too: dbt's unit and data tests see this history in both modes.
    incremental = "incremental"
    try:
        create_raw_tables(url)
        _initial_rows(url)
        build(url, as_of=T1, livemode=False, target_path=target, selector=incremental)
        out["T1"] = _tables(url)
        _cyd_cancels(url)
        build(url, as_of=T2, livemode=False, target_path=target, selector=incremental)
        out["T2"] = _tables(url)
        build(url, as_of=T2, livemode=False, target_path=target, selector=incremental)
        out["T2 again"] = _tables(url)
        _trial_passes_cyd_returns_dan_arrives(url)
        build(url, as_of=T3, livemode=False, target_path=target, selector=incremental)
        out["T3"] = _tables(url)
        _dan_cancels_without_an_event(url)
        build(url, as_of=T3, livemode=False, target_path=target, selector=incremental)
        out["T3 changed"] = _tables(url)
        _ada_converts_bob_deleted(url)
        build(url, as_of=T4, livemode=False, target_path=target, full_refresh=True)
        out["T4 full refresh"] = _tables(url)
        _live_customer_arrives(url)
        build(url, as_of=T5, livemode=True, target_path=target)
        out["T5 live key"] = _tables(url)
        yield Scenario(url, out)
    finally:
        _drop_database(server_url, name)


def _stays(rows: list[dict[str, object]], customer_id: str, segment: str) -> list[tuple]:
    return [
        (r["entered_at"], r["exited_at"], r["changed_at"])
        for r in rows
        if r["stripe_customer_id"] == customer_id and r["segment"] == segment
    ]


def test_first_build_enters_every_member_at_as_of(scenario: Scenario) -> None:
    history = scenario.builds["T1"]["history"]
    assert {(r["stripe_customer_id"], r["segment"]) for r in history} == {
        ("cus_ada", "syncing_with_stripe"),
        ("cus_ada", "current_trials"),
        ("cus_bob", "syncing_with_stripe"),
        ("cus_bob", "customers"),
        ("cus_cyd", "syncing_with_stripe"),
        ("cus_cyd", "customers"),
    }
    assert all(r["entered_at"] == T1 and r["exited_at"] is None for r in history)
    assert not any(r["livemode"] for r in history)
    created = at(-0.5)
    # Where Stripe tells the moment: customer.created, the trialing subscription's creation.
    assert _stays(history, "cus_ada", "syncing_with_stripe") == [(T1, None, created)]
    assert _stays(history, "cus_ada", "current_trials") == [(T1, None, created)]
    assert _stays(history, "cus_bob", "syncing_with_stripe") == [(T1, None, None)]
    assert _stays(history, "cus_bob", "customers") == [(T1, None, created)]


def test_a_status_change_closes_one_stay_and_opens_another(scenario: Scenario) -> None:
    history = scenario.builds["T2"]["history"]
    assert _stays(history, "cus_cyd", "customers") == [(T1, T2, CYD_CANCELED)]
    assert _stays(history, "cus_cyd", "churned_customers") == [(T2, None, CYD_CANCELED)]
    assert _stays(history, "cus_cyd", "syncing_with_stripe") == [(T1, None, at(-0.5))]


def test_building_again_at_the_same_as_of_adds_nothing(scenario: Scenario) -> None:
    assert scenario.builds["T2 again"] == scenario.builds["T2"]


def test_leaving_and_re_entering_gives_a_second_stay(scenario: Scenario) -> None:
    history = scenario.builds["T3"]["history"]
    assert _stays(history, "cus_cyd", "customers") == [
        (T1, T2, CYD_CANCELED),
        (T3, None, CYD_REACTIVATED),
    ]
    assert _stays(history, "cus_cyd", "churned_customers") == [(T2, T3, CYD_REACTIVATED)]


def test_an_expired_trial_enters_at_its_trial_end(scenario: Scenario) -> None:
    assert _stays(scenario.builds["T3"]["history"], "cus_ada", "expired_trials") == [
        (T3, None, TRIAL_END)
    ]
    assert _stays(scenario.builds["T3"]["history"], "cus_ada", "current_trials") == [
        (T1, None, at(-0.5))
    ]


def test_a_new_customer_enters_without_a_stripe_moment(scenario: Scenario) -> None:
    history = scenario.builds["T3"]["history"]
    assert _stays(history, "cus_dan", "syncing_with_stripe") == [(T3, None, None)]
    assert _stays(history, "cus_dan", "customers") == [(T3, None, None)]


def test_full_refresh_keeps_the_history_and_records_the_builds_changes(scenario: Scenario) -> None:
    before = scenario.builds["T3 changed"]["history"]
    after = scenario.builds["T4 full refresh"]["history"]
    key = ("segment", "stripe_customer_id", "entered_at")
    after_by_key = {tuple(r[k] for k in key): r for r in after}
    assert len(after_by_key) == len(after), "a stay is duplicated"
    for row in before:
        kept = after_by_key[tuple(row[k] for k in key)]
        if row["exited_at"] is not None:
            assert kept == row  # closed stays never change
    assert _stays(after, "cus_ada", "current_trials") == [(T1, T4, ADA_CONVERTED)]
    assert _stays(after, "cus_ada", "expired_trials") == [(T3, T4, ADA_CONVERTED)]
    assert _stays(after, "cus_ada", "customers") == [(T4, None, ADA_CONVERTED)]
    assert _stays(after, "cus_bob", "syncing_with_stripe") == [(T1, T4, BOB_DELETED)]
    # bob's only subscription event is older than his stay: his exit has no Stripe moment.
    assert _stays(after, "cus_bob", "customers") == [(T1, T4, None)]
    assert len(after) == len(before) + 1


def test_the_feed_only_grows_and_never_renumbers(scenario: Scenario) -> None:
    builds = list(scenario.builds.values())
    for earlier, later in pairwise(builds):
        previous = earlier["changes"]
        assert later["changes"][: len(previous)] == previous
    final = builds[-1]["changes"]
    ids = [row["change_id"] for row in final]
    assert ids == list(range(1, len(final) + 1)), "change_id has a gap, a repeat or a reorder"
    detected = [row["detected_at"] for row in final]
    assert detected == sorted(detected)


def test_the_feed_has_each_entry_and_exit_once(scenario: Scenario) -> None:
    final = scenario.builds["T4 full refresh"]
    expected = sorted(
        [
            (r["segment"], r["stripe_customer_id"], "entered", r["entered_at"])
            for r in final["history"]
        ]
        + [
            (r["segment"], r["stripe_customer_id"], "exited", r["exited_at"])
            for r in final["history"]
            if r["exited_at"] is not None
        ]
    )
    got = sorted(
        (r["segment"], r["stripe_customer_id"], r["change"], r["detected_at"])
        for r in final["changes"]
    )
    assert got == expected
    per_build = {name: len(tables["changes"]) for name, tables in scenario.builds.items()}
    # T1: 6 entries; T2: cyd exits customers, enters churned; T3: cyd back (2), ada expired (1),
    # dan (2); T3 changed: dan exits customers, enters churned_customers; T4: ada exits
    # current_trials and expired_trials, enters customers; bob exits 2.
    # T5 (live key): cus_liv enters syncing_with_stripe; no test-mode stay closes.
    assert per_build == {
        "T1": 6,
        "T2": 8,
        "T2 again": 8,
        "T3": 13,
        "T3 changed": 15,
        "T4 full refresh": 20,
        "T5 live key": 21,
    }


def test_the_feed_carries_moments_and_emails(scenario: Scenario) -> None:
    changes = scenario.builds["T4 full refresh"]["changes"]
    by_key = {
        (r["segment"], r["stripe_customer_id"], r["change"], r["detected_at"]): r for r in changes
    }
    cyd_back = by_key[("customers", "cus_cyd", "entered", T3)]
    assert cyd_back["changed_at"] == CYD_REACTIVATED
    assert cyd_back["customer_email"] == "cyd@example.com"
    cyd_first = by_key[("customers", "cus_cyd", "entered", T1)]
    assert cyd_first["changed_at"] is None
    assert by_key[("customers", "cus_cyd", "exited", T2)]["changed_at"] == CYD_CANCELED
    bob_gone = by_key[("syncing_with_stripe", "cus_bob", "exited", T4)]
    assert bob_gone["changed_at"] == BOB_DELETED
    assert bob_gone["customer_email"] == "bob@example.com"  # the last one known
    assert by_key[("expired_trials", "cus_ada", "entered", T3)]["changed_at"] == TRIAL_END
    # Within a build, exits come before entries.
    t4 = [r["change"] for r in changes if r["detected_at"] == T4]
    assert t4 == sorted(t4, reverse=True)


def test_readmes_change_feed_query_runs_and_follows_the_feed(scenario: Scenario) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("## Automations") :]
    query = section.split("```sql\n", 1)[1].split("```", 1)[0]
    assert "change_id > 1200" in query and "'slipping_customers'" in query
    followed = query.replace("change_id > 1200", "change_id > 6").replace(
        "'slipping_customers'", "'customers'"
    )
    with psycopg.connect(scenario.url) as conn:
        assert conn.execute(query).fetchall() == []
        rows = conn.execute(followed).fetchall()
    # After the first build's 6 entries: cyd back (T3), dan (T3), ada converted (T4).
    assert [row[1] for row in rows] == ["cus_cyd", "cus_dan", "cus_ada"]


def test_a_switch_of_key_leaves_the_other_modes_stays_open(scenario: Scenario) -> None:
    before, after = scenario.builds["T4 full refresh"], scenario.builds["T5 live key"]
    assert [r for r in after["history"] if not r["livemode"]] == before["history"]
    live = [r for r in after["history"] if r["livemode"]]
    assert [(r["segment"], r["stripe_customer_id"], r["entered_at"]) for r in live] == [
        ("syncing_with_stripe", "cus_liv", T5)
    ]
    new = after["changes"][len(before["changes"]) :]
    assert [(r["change"], r["stripe_customer_id"], r["livemode"]) for r in new] == [
        ("entered", "cus_liv", True)
    ]


def test_a_change_at_an_as_of_already_recorded_gets_a_time_of_its_own(scenario: Scenario) -> None:
    history = scenario.builds["T3 changed"]["history"]
    just_after = T3 + timedelta(microseconds=1)
    assert _stays(history, "cus_dan", "customers") == [(T3, just_after, None)]
    assert _stays(history, "cus_dan", "churned_customers") == [(T3, None, None)]
