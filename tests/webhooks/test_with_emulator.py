"""Against the emulator: `webhooks register` creates one endpoint with our event types, and the
emulator's signed deliveries keep stripe_raw equal to Stripe's truth without a second sync."""

from __future__ import annotations

import inspect
import re

import httpx
import psycopg
import pytest
import stripe
from stripe.params import _webhook_endpoint_create_params as create_params

from orchestration.core.errors import PermissionsError, SettingsError
from orchestration.core.settings import load_settings
from orchestration.extract import sync_stripe
from orchestration.extract.client import API_VERSION, StripeApi
from orchestration.extract.events import newest_event, poll_heads, read_events
from orchestration.extract.objects import BY_STRIPE_OBJECT
from orchestration.webhooks.event_types import CONSUMED_EVENT_TYPES, EVENT_TYPES_BY_OBJECT
from orchestration.webhooks.register import check_endpoint_url, register_endpoint
from orchestration.webhooks.server import create_app
from tests.extract.conftest import assert_matches_emulator, duplicate_count
from tests.webhooks.conftest import ENDPOINT_WHSEC, RunningServer, customer_event, post, rows

LEGACY_VERSION = "2025-02-24.acacia"  # before 2025-03-31: another shape, so re-fetched

READ_PERMISSIONS = {
    "Charges: Read",
    "Customers: Read",
    "Events: Read",
    "Checkout Sessions: Read",
    "Invoices: Read",
    "Prices: Read",
    "Subscriptions: Read",
}


def _settings(emu, key: str | None = None):
    return load_settings(stripe_api_key=key or emu.test_key, stripe_api_base=emu.url)


def _endpoints(emu, key: str | None = None) -> list:
    client = stripe.StripeClient(key or emu.test_key, base_addresses={"api": emu.url})
    return list(client.v1.webhook_endpoints.list({"limit": 100}).auto_paging_iter())


def test_register_creates_the_endpoint_and_prints_its_secret_once(emulator, capsys):
    url = "https://hooks.example.com/stripe/webhook"
    first = register_endpoint(_settings(emulator), url=url)
    out = capsys.readouterr().out
    assert first.created and first.secret and first.secret.startswith("whsec_")
    assert f"STRIPE_WEBHOOK_SECRET={first.secret}" in out
    assert emulator.test_key not in out
    [endpoint] = _endpoints(emulator)
    assert endpoint.url == url
    assert sorted(endpoint.enabled_events) == sorted(CONSUMED_EVENT_TYPES)
    assert endpoint.api_version == API_VERSION


def test_register_uses_the_configured_api_version(emulator, capsys):
    settings = load_settings(
        stripe_api_key=emulator.test_key,
        stripe_api_base=emulator.url,
        stripe_api_version="2025-03-31.basil",
    )
    register_endpoint(settings, url="https://hooks.example.com/stripe/basil")
    assert "API version 2025-03-31.basil" in capsys.readouterr().out
    [endpoint] = _endpoints(emulator)
    assert endpoint.api_version == "2025-03-31.basil"  # its events need no re-fetch


def test_register_is_idempotent_for_the_same_url(emulator, capsys):
    url = "https://hooks.example.com/stripe/webhook"
    first = register_endpoint(_settings(emulator), url=url)
    capsys.readouterr()
    again = register_endpoint(_settings(emulator), url=url)
    out = capsys.readouterr().out
    assert (again.created, again.endpoint_id, again.secret) == (False, first.endpoint_id, None)
    assert "already exists" in out
    assert "cannot be retrieved again" in out
    assert "whsec_" not in out
    assert len(_endpoints(emulator)) == 1


def test_register_refuses_a_key_without_webhook_endpoints_write(emulator):
    key = emulator.restricted_key(permissions=READ_PERMISSIONS)
    with pytest.raises(PermissionsError) as caught:
        register_endpoint(_settings(emulator, key), url="https://hooks.example.com/x")
    line = caught.value.one_line()
    assert "Webhook Endpoints: Write" in line
    assert "\n" not in line
    assert _endpoints(emulator) == []


def test_register_works_with_a_restricted_key_that_may_write_endpoints(emulator, capsys):
    key = emulator.restricted_key(permissions={"Webhook Endpoints: Write"})
    registration = register_endpoint(_settings(emulator, key), url="https://hooks.example.com/y")
    assert registration.secret in capsys.readouterr().out  # shown once by design, read here
    assert registration.created


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/stripe/webhook",
        "ftp://hooks.example.com/x",
        "hooks.example.com/stripe/webhook",
        "https:///no-host",
    ],
    ids=["http-remote", "ftp", "no-scheme", "no-host"],
)
def test_register_refuses_urls_stripe_would_not_deliver_to(url):
    with pytest.raises(SettingsError) as caught:
        check_endpoint_url(url)
    assert "must be https" in caught.value.one_line()


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/stripe/webhook",
        "http://127.0.0.1:8000/stripe/webhook",
        "http://localhost:8000/stripe/webhook",
    ],
    ids=["https", "loopback", "localhost"],
)
def test_register_accepts_https_and_local_http(url):
    assert check_endpoint_url(url) == url


def test_event_types_exist_in_stripe():
    # The SDK's own list of event types an endpoint may enable (a Literal in its params).
    known = set(re.findall(r'"([a-z_]+(?:\.[a-z_]+)+)"', inspect.getsource(create_params)))
    assert "customer.created" in known
    assert set(CONSUMED_EVENT_TYPES) <= known
    assert len(set(CONSUMED_EVENT_TYPES)) == len(CONSUMED_EVENT_TYPES)


def test_event_types_are_filed_under_the_object_they_carry(emulator):
    """EVENT_TYPES_BY_OBJECT derives from the ObjectSpec records: the emulator's event log holds
    them to Stripe's shapes. A consumed type carries the object it is filed under, and every
    event carrying a synced object with an id is consumed."""
    emulator.tick(200)
    filed = {t: obj for obj, types in EVENT_TYPES_BY_OBJECT.items() for t in types}
    client = StripeApi(emulator.test_key, emulator.url, max_rps=1000)
    seen = set()
    for page in client.list_pages("/v1/events", limit=100):
        for event in page.objects:
            carried = event["data"]["object"]
            if event["type"] in filed:
                assert carried["object"] == filed[event["type"]], event["type"]
                seen.add(carried["object"])
            else:
                assert carried["object"] not in BY_STRIPE_OBJECT or not carried.get("id")
    assert set(BY_STRIPE_OBJECT) - {"price", "product"} <= seen  # those two change rarely


def test_emulator_deliveries_keep_raw_tables_equal_to_stripe(emulator, database_url, capsys):
    sync_stripe(database_url, emulator.test_key, api_base=emulator.url, max_rps=1000)
    client = StripeApi(emulator.test_key, emulator.url, max_rps=1000)
    before, _ = newest_event(client)
    with RunningServer() as server:
        registration = register_endpoint(_settings(emulator), url=server.webhook_url)
        capsys.readouterr()  # the signing secret, shown once by design: not for the audited log
        server.start(create_app(database_url, [registration.secret], client))
        emulator.tick(60)
        emulator.flush_webhooks()
    sent = {e["id"] for page, _, _ in read_events(client, before, None) for e in page}
    assert sent, "the ticks made no test-mode event"
    assert emulator.stats()["webhooks_failed"] == 0
    assert emulator.stats()["webhooks_delivered"] == len(sent)
    applied = rows(
        database_url, "select event_id from stripe_raw.webhook_deliveries where outcome = 'applied'"
    )
    assert {row[0] for row in applied} == sent
    # No second sync: the webhooks alone brought every change.
    assert_matches_emulator(database_url, emulator)
    assert duplicate_count(database_url) == 0


def test_event_in_another_api_version_is_refetched_inside_the_handler(emulator, database_url):
    customer_id, truth = next(iter(emulator.objects("customers").items()))
    client = StripeApi(emulator.test_key, emulator.url, max_rps=1000)
    app = create_app(database_url, [ENDPOINT_WHSEC], client)
    stale = customer_event(
        "evt_old_version", customer_id, name="Stale Copy", api_version=LEGACY_VERSION
    )
    with RunningServer(app) as server, httpx.Client(base_url=server.url) as http:
        response = post(http, stale)
    assert (response.status_code, response.json()["outcome"]) == (200, "applied")
    [(data,)] = rows(database_url, "select data from stripe_raw.customers")
    assert data == truth
    assert data["name"] != "Stale Copy"


def test_deliveries_from_an_account_on_an_older_api_version_converge(
    emulator_factory, database_url, capsys
):
    emu = emulator_factory(seed=2, api_version=LEGACY_VERSION, rate_limit=None)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    client = StripeApi(emu.test_key, emu.url, max_rps=1000)
    with RunningServer() as server:
        registration = register_endpoint(_settings(emu), url=server.webhook_url)
        capsys.readouterr()  # the signing secret, shown once by design: not for the audited log
        server.start(create_app(database_url, [registration.secret], client))
        emu.tick(30)
        emu.flush_webhooks()
    assert emu.stats()["webhooks_delivered"] > 0
    assert emu.stats()["webhooks_failed"] == 0
    # Stripe sends no event when a checkout session opens: the sync's head poll brings those.
    with psycopg.connect(database_url, autocommit=True) as conn:
        poll_heads(conn, client)
    assert_matches_emulator(database_url, emu)
