"""What Stripe may legitimately send: optional fields null, names and emails in any script, huge
metadata. Real emulator objects, mutated by hypothesis, are loaded through apply_events (the path
of the events API and of webhooks) and modelled by one dbt build per example, without error; the
fields come out as they went in."""

from __future__ import annotations

import copy
import itertools
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.core.warehouse import with_database
from orchestration.emulator import start_emulator
from orchestration.extract import sync_stripe
from orchestration.extract.client import API_VERSION, StripeApi
from orchestration.extract.events import apply_events
from orchestration.transform.runner import build
from tests.conftest import _create_database, _drop_database

FULL = os.environ.get("STRIPE_SYNC_CHAOS_FULL") == "1"
AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

# Fields Stripe documents as nullable (API reference, "nullable" attributes), per object.
NULLABLE = {
    "customers": ["address", "currency", "default_source", "delinquent", "description",
                  "discount", "email", "invoice_prefix", "name", "phone", "preferred_locales",
                  "shipping", "tax_exempt", "test_clock"],
    "subscriptions": ["cancel_at", "canceled_at", "default_payment_method", "description",
                      "discount", "ended_at", "latest_invoice", "pause_collection", "schedule",
                      "trial_end", "trial_start", "days_until_due", "billing_thresholds",
                      "cancellation_details"],
    "charges": ["customer", "description", "failure_code", "failure_message", "payment_intent",
                "receipt_email", "receipt_url", "statement_descriptor", "outcome", "shipping",
                "balance_transaction", "payment_method", "payment_method_details"],
    "invoices": ["customer_email", "customer_name", "customer_phone", "customer_address",
                 "description", "due_date", "number", "footer", "hosted_invoice_url",
                 "invoice_pdf", "next_payment_attempt", "default_payment_method", "discount",
                 "status"],
}  # fmt: skip
EVENT_TYPES = {
    "customers": "customer.updated",
    "subscriptions": "customer.subscription.updated",
    "charges": "charge.updated",
    "invoices": "invoice.updated",
}
NASTY = [
    "Zoë O'Brien-Łukasz 😀", "حسن عبد الله", "\u202eevil RTL", "'; drop table customers; --",
    'quote "x" \\ back\\slash', "line\nbreak\ttab", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "日本語の名前", "e\u0301 combining",
    "   ", "",
]  # fmt: skip
EMAILS = ["jöhn.ü@exämple.com", "MIXED.Case@Example.COM", "a+tag@example.co.uk", "not-an-email",
          "名前@例え.jp"]  # fmt: skip

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=80,
)
odd_text = st.one_of(st.sampled_from(NASTY), text)
huge_metadata = {f"key_{i:02d}_" + "k" * 30: "v" * 480 + "é€😀" * 5 for i in range(50)}
metadata = st.one_of(
    st.just({}),
    st.just(huge_metadata),
    st.dictionaries(st.text(min_size=1, max_size=40).filter(lambda k: "\x00" not in k),
                    odd_text, max_size=50),
)  # fmt: skip
_counter = itertools.count()


@pytest.fixture(scope="module")
def world(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One emulator and one synced database for every example (a build per example is costly)."""
    name = _create_database(server_url, "stripe_sync_test")
    url = with_database(server_url, name)
    with start_emulator(customers=25, seed=17, rate_limit=None) as emu:
        sync_stripe(url, emu.test_key, api_base=emu.url, max_rps=1000)
        objects = {table: list(emu.objects(table).values()) for table in EVENT_TYPES}
        yield {"url": url, "emu": emu, "objects": objects,
               "target": tmp_path_factory.mktemp("dbt-target")}  # fmt: skip
    _drop_database(server_url, name)


def _mutate(data: st.DataObject, table: str, obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    for field in data.draw(st.sets(st.sampled_from(NULLABLE[table]), max_size=6)):
        obj[field] = None
    obj["metadata"] = data.draw(metadata)
    if table == "customers":
        if obj.get("name") is not None:
            obj["name"] = data.draw(odd_text)
        if obj.get("email") is not None:
            obj["email"] = data.draw(st.one_of(st.sampled_from(EMAILS), odd_text))
        if obj.get("description") is not None:
            obj["description"] = data.draw(odd_text)
        if isinstance(obj.get("address"), dict):
            for part in ("line1", "line2", "city", "state", "postal_code"):
                obj["address"][part] = data.draw(st.one_of(st.none(), odd_text))
    if table == "subscriptions":
        # Ids left unexpanded would make the loader re-read the object from Stripe.
        obj["discounts"] = [d for d in obj.get("discounts") or [] if isinstance(d, dict)]
        for item in obj["items"]["data"]:
            if data.draw(st.booleans()):
                item["price"]["nickname"] = data.draw(st.one_of(st.none(), odd_text))
            if data.draw(st.booleans()):  # tiered or custom prices have no unit_amount
                item["price"]["unit_amount"] = None
                item["price"]["unit_amount_decimal"] = None
            if data.draw(st.booleans()):  # metered items have no quantity
                item["quantity"] = None
    if table == "charges":
        obj["description"] = data.draw(st.one_of(st.none(), odd_text))
        if isinstance(obj.get("billing_details"), dict):
            obj["billing_details"]["name"] = data.draw(st.one_of(st.none(), odd_text))
    return obj


def _event(table: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
    return {
        "id": f"evt_odd_{next(_counter):08d}", "object": "event", "api_version": API_VERSION,
        "created": created, "livemode": False, "pending_webhooks": 0, "type": EVENT_TYPES[table],
        "request": {"id": None, "idempotency_key": None}, "data": {"object": obj},
    }  # fmt: skip


@settings(
    max_examples=15 if FULL else 3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)  # fmt: skip
@given(data=st.data())
def test_odd_but_valid_objects_load_and_model(world: dict[str, Any], data: st.DataObject) -> None:
    # Newer than every stored snapshot (and a new second per example), so each example's state wins.
    created = int(time.time()) + 10 + 2 * next(_counter)
    mutated = {t: [_mutate(data, t, o) for o in objs] for t, objs in world["objects"].items()}
    events = [_event(t, o, created) for t, objs in mutated.items() for o in objs]
    emu = world["emu"]
    with psycopg.connect(world["url"], autocommit=True) as conn:
        applied = apply_events(conn, StripeApi(emu.test_key, emu.url, max_rps=1000), events)
    assert applied.refetched == 0
    assert sum(applied.written.values()) == len(events)

    build(world["url"], as_of=AS_OF, livemode=False, target_path=Path(world["target"]))

    with psycopg.connect(world["url"]) as conn:
        fields = {
            row[0]: row[1:]
            for row in conn.execute(
                "select stripe_customer_id, customer_name, customer_email, customer_description"
                " from stripe.customer_fields"
            )
        }
        live = conn.execute(
            "select count(*) from stripe_raw.customers where not is_deleted and not livemode"
        ).fetchone()[0]
    assert len(fields) == live
    for customer in mutated["customers"]:
        name, email, description = fields[customer["id"]]
        assert (name, email, description) == (
            customer["name"], customer["email"], customer["description"]
        )  # fmt: skip
