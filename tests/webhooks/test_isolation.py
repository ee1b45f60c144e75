"""One bad event never fails its neighbours: only Stripe or the database being unavailable fails a
batch; an event that cannot be applied for a reason of its own (a re-fetch refused with 403, an
object Postgres refuses) is acknowledged, recorded as failed, and shown by `status`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from orchestration.core.errors import StripeUnavailableError
from orchestration.extract.client import StripeApi
from orchestration.webhooks.health import read_webhook_health, render_webhook_health
from orchestration.webhooks.server import create_app
from tests.webhooks.conftest import (
    ENDPOINT_WHSEC,
    UNREACHABLE_API,
    RunningServer,
    customer_event,
    post,
    rows,
)
from tests.webhooks.test_with_emulator import LEGACY_VERSION, READ_PERMISSIONS

DELIVERIES = "select event_id, outcome, reason from stripe_raw.webhook_deliveries order by 1, 2"


def _invoice_event(emulator: Any, event_id: str) -> dict[str, Any]:
    """An invoice event in another API version: applying it needs a re-fetch of the invoice."""
    invoice_id, invoice = next(iter(emulator.objects("invoices").items()))
    event = customer_event(event_id, api_version=LEGACY_VERSION, event_type="invoice.updated")
    event["data"]["object"] = {**invoice, "id": invoice_id}
    return event


@pytest.fixture
def without_invoices(emulator) -> StripeApi:
    """A restricted key that may read everything but invoices: their re-fetch answers 403."""
    key = emulator.restricted_key(permissions=READ_PERMISSIONS - {"Invoices: Read"})
    return StripeApi(key, emulator.url, max_rps=1000)


def test_batch_with_a_poison_event_applies_the_others_and_records_it(
    emulator, database_url, without_invoices
):
    app = create_app(database_url, [ENDPOINT_WHSEC], without_invoices)
    good = [customer_event(f"evt_good{n}", f"cus_good{n}") for n in range(3)]
    poison = _invoice_event(emulator, "evt_poison")
    with RunningServer(app):  # lifespan started: the receiver's pool and tables exist
        outcomes = app.state.receiver.store_batch([good[0], poison, good[1], good[2]])
    assert [(o.outcome, o.event_id) for o in outcomes] == [
        ("applied", "evt_good0"),
        ("failed", "evt_poison"),
        ("applied", "evt_good1"),
        ("applied", "evt_good2"),
    ]
    assert "Invoices: Read" in (outcomes[1].reason or "")
    assert rows(database_url, "select id from stripe_raw.events order by id") == [
        ("evt_good0",),
        ("evt_good1",),
        ("evt_good2",),
    ]
    assert rows(database_url, "select count(*) from stripe_raw.customers") == [(3,)]
    assert rows(database_url, "select count(*) from stripe_raw.invoices") == [(0,)]
    deliveries = rows(database_url, DELIVERIES)
    assert [(event_id, outcome) for event_id, outcome, _ in deliveries] == [
        ("evt_good0", "applied"),
        ("evt_good1", "applied"),
        ("evt_good2", "applied"),
        ("evt_poison", "failed"),
    ]
    reason = deliveries[3][2]
    assert "Invoices: Read" in reason
    assert emulator.test_key not in reason


def test_poison_event_delivered_with_others_is_acknowledged_and_shown_by_status(
    emulator, database_url, without_invoices
):
    app = create_app(database_url, [ENDPOINT_WHSEC], without_invoices, writers=1)
    good = [customer_event(f"evt_ok{n}", f"cus_ok{n}") for n in range(6)]
    poison = _invoice_event(emulator, "evt_bad_invoice")
    deliveries = [*good[:3], poison, *good[3:]]
    with (
        RunningServer(app) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
        ThreadPoolExecutor(len(deliveries)) as pool,
    ):
        answers = list(pool.map(lambda event: post(http, event), deliveries))
        again = post(http, poison)  # had Stripe retried it anyway: failed again, still 2xx
    assert [a.status_code for a in answers] == [200] * len(deliveries)
    outcomes = {a.json()["id"]: a.json()["outcome"] for a in answers}
    assert outcomes == {**{e["id"]: "applied" for e in good}, "evt_bad_invoice": "failed"}
    assert "Invoices: Read" in answers[3].json()["error"]
    assert (again.status_code, again.json()["outcome"]) == (200, "failed")
    assert rows(database_url, "select count(*) from stripe_raw.events") == [(6,)]
    with psycopg.connect(database_url) as conn:
        health = read_webhook_health(conn)
    assert (health["events_last_hour"], health["failed_last_day"]) == (6, 2)
    assert health["last_failed_event_id"] == "evt_bad_invoice"
    text = render_webhook_health(health)
    assert "failed events (acknowledged, not applied): 2 in the last day" in text
    assert "Invoices: Read" in text


def test_event_whose_object_postgres_refuses_is_recorded_not_retried(http, database_url):
    bad = customer_event("evt_nul", "cus_nul", name="nul \u0000 byte")  # jsonb has no \u0000
    fine = customer_event("evt_fine", "cus_fine")
    answer = post(http, bad)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "failed")
    assert post(http, fine).json()["outcome"] == "applied"
    assert rows(database_url, "select id from stripe_raw.events") == [("evt_fine",)]
    [applied, failed] = rows(database_url, DELIVERIES)
    assert applied == ("evt_fine", "applied", None)
    assert failed[:2] == ("evt_nul", "failed")
    assert failed[2]  # the database's reason, for `status`


def test_unexpected_error_is_recorded_and_answered_5xx_without_failing_its_neighbours(
    app_factory, database_url
):
    odd = customer_event("evt_odd", "cus_odd")
    odd["created"] = "soon"  # signed, an event by its shape, but no time: nothing expects this
    fine = customer_event("evt_fine", "cus_fine")
    http = app_factory()
    outcomes = http.app.state.receiver.store_batch([odd, fine])
    assert isinstance(outcomes[0], ValueError)  # answered 5xx: Stripe redelivers it
    assert (outcomes[1].outcome, outcomes[1].event_id) == ("applied", "evt_fine")
    assert post(http, odd).status_code == 500
    assert rows(database_url, "select id from stripe_raw.events") == [("evt_fine",)]
    assert rows(database_url, DELIVERIES) == [
        ("evt_fine", "applied", None),
        ("evt_odd", "failed", "ValueError: invalid literal for int() with base 10: 'soon'"),
        ("evt_odd", "failed", "ValueError: invalid literal for int() with base 10: 'soon'"),
    ]


def test_stripe_unavailable_still_fails_the_whole_batch(database_url):
    # Nothing listens there, and one attempt only: the re-fetch fails as an outage does.
    client = StripeApi("sk_test_webhooks0000", UNREACHABLE_API, max_attempts=1)
    app = create_app(database_url, [ENDPOINT_WHSEC], client)
    needs_refetch = customer_event("evt_refetch", "cus_r", api_version=LEGACY_VERSION)
    plain = customer_event("evt_plain", "cus_p")
    with RunningServer(app) as server:
        with pytest.raises(StripeUnavailableError):
            app.state.receiver.store_batch([plain, needs_refetch])
        with httpx.Client(base_url=server.url, timeout=60) as http:
            answer = post(http, needs_refetch)
    assert answer.status_code == 503  # Stripe redelivers it once Stripe answers again
    assert rows(database_url, "select count(*) from stripe_raw.events") == [(0,)]
    assert rows(database_url, "select count(*) from stripe_raw.webhook_deliveries") == [(0,)]
