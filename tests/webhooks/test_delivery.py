"""Verified events are applied exactly once, whatever the order and however often Stripe
delivers them, and end in the state an in-order sync reaches."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg

from orchestration.extract.events import apply_events
from orchestration.extract.loader import ensure_raw_tables
from orchestration.webhooks.server import create_app
from tests.webhooks.conftest import ENDPOINT_WHSEC, RunningServer, customer_event, post, rows

CUSTOMER_STATE = "select id, data, is_deleted, snapshot_at from stripe_raw.customers order by id"


def test_replayed_event_is_stored_once_and_answered_2xx_both_times(http, database_url):
    event = customer_event("evt_replay")
    first, second = post(http, event), post(http, event)
    assert (first.status_code, first.json()["outcome"]) == (200, "applied")
    assert (second.status_code, second.json()["outcome"]) == (200, "duplicate")
    assert rows(database_url, "select count(*) from stripe_raw.events") == [(1,)]
    assert rows(
        database_url, "select event_id, outcome from stripe_raw.webhook_deliveries order by 2"
    ) == [("evt_replay", "applied"), ("evt_replay", "duplicate")]


def test_older_event_arriving_late_never_overwrites_newer_state(http, database_url):
    newer = customer_event("evt_newer", created=1_800_000_100, name="Newer Name")
    older = customer_event("evt_older", created=1_800_000_000, name="Older Name")
    assert post(http, newer).status_code == 200
    assert post(http, older).status_code == 200
    assert rows(database_url, "select data ->> 'name' from stripe_raw.customers") == [
        ("Newer Name",)
    ]
    assert rows(database_url, "select count(*) from stripe_raw.events") == [(2,)]


def test_deletion_is_sticky_whatever_the_order(http, database_url):
    deleted = customer_event("evt_del", created=1_800_000_050, event_type="customer.deleted")
    updated = customer_event("evt_upd", created=1_800_000_000)
    post(http, deleted)
    post(http, updated)
    assert rows(database_url, "select is_deleted from stripe_raw.customers") == [(True,)]


def _history() -> list[dict]:
    """Several customers, each updated several times: the order a sync would read."""
    events = []
    for step in range(6):
        for n in range(5):
            events.append(
                customer_event(
                    f"evt_{step}_{n}",
                    f"cus_{n}",
                    created=1_800_000_000 + step * 10 + n,
                    name=f"customer {n} version {step}",
                )
            )
    return events


def _in_order_sync_state(database_factory, stripe_api, events) -> list[tuple]:
    url = database_factory()
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_raw_tables(conn)
        apply_events(conn, stripe_api, events)
        return conn.execute(CUSTOMER_STATE).fetchall()


def test_shuffled_and_duplicated_deliveries_converge_to_the_in_order_state(
    http, database_url, database_factory, stripe_api
):
    events = _history()
    deliveries = events + random.Random(7).sample(events, 12)  # noqa: S311 - Stripe retries some
    random.Random(3).shuffle(deliveries)  # noqa: S311
    for event in deliveries:
        assert post(http, event).status_code == 200
    assert rows(database_url, CUSTOMER_STATE) == _in_order_sync_state(
        database_factory, stripe_api, events
    )
    assert rows(database_url, "select count(*) from stripe_raw.events") == [(len(events),)]
    assert rows(
        database_url,
        "select outcome, count(*) from stripe_raw.webhook_deliveries group by 1 order by 1",
    ) == [("applied", len(events)), ("duplicate", 12)]


def test_concurrent_deliveries_of_the_same_events_store_each_once(
    database_url, database_factory, stripe_api
):
    events = _history()
    deliveries = events * 3
    random.Random(11).shuffle(deliveries)  # noqa: S311
    app = create_app(database_url, [ENDPOINT_WHSEC], stripe_api, writers=4, max_batch=8)
    with (
        RunningServer(app) as server,
        httpx.Client(base_url=server.url) as client,
        ThreadPoolExecutor(16) as pool,
    ):
        statuses = list(pool.map(lambda e: post(client, e).status_code, deliveries))
    assert set(statuses) == {200}
    assert rows(database_url, "select count(*) from stripe_raw.events") == [(len(events),)]
    assert rows(
        database_url,
        "select outcome, count(*) from stripe_raw.webhook_deliveries group by 1 order by 1",
    ) == [("applied", len(events)), ("duplicate", 2 * len(events))]
    assert rows(database_url, CUSTOMER_STATE) == _in_order_sync_state(
        database_factory, stripe_api, events
    )
