"""At the SDK's pinned API version, the emulator's objects have Stripe's fields, no more, no fewer.

The reference is Stripe's own: its published example objects (tests/fixtures/stripe/) and the
locked SDK's typed classes, never the emulator itself. A stale field (one Stripe removed) fails,
and so does a missing one, unless the allow-list below says why an account may lack it.
"""

from __future__ import annotations

from typing import Any

import stripe

from orchestration.emulator import Emulator
from tests.emulator.conftest import sdk
from tests.helpers.stripe_shapes import ShapeDiff, compare, fixtures

# Optional fields an account may lack, each with its reason.
MAY_BE_MISSING = {
    # Stripe omits `quantity` on items of metered prices, which have none (the demo has some).
    "subscription.items[].quantity",
    "event.data.object.items[].quantity",
}


def _list(client: stripe.StripeClient, path: str, **params: Any) -> list[dict[str, Any]]:
    return client.raw_request("get", path, limit=100, **params).data["data"]


def _objects_by_resource(client: stripe.StripeClient) -> dict[str, list[dict[str, Any]]]:
    """Every object type the pipeline syncs or reads, as the pipeline asks for them."""
    subs = _list(client, "/v1/subscriptions", status="all", expand=["data.discounts.source.coupon"])
    customers = _list(client, "/v1/customers", expand=["data.discount.source.coupon"])
    discounts = [d for s in subs for d in s["discounts"]]
    discounts += [c["discount"] for c in customers if c["discount"]]
    return {
        "customer": customers,
        "subscription": subs,
        "invoice": _list(client, "/v1/invoices"),
        "charge": _list(client, "/v1/charges"),
        "price": _list(client, "/v1/prices"),
        "product": _list(client, "/v1/products"),
        "checkout.session": _list(client, "/v1/checkout/sessions"),
        "event": _list(client, "/v1/events"),
        "coupon": _list(client, "/v1/coupons"),
        "discount": discounts,
    }


def test_the_fixture_copy_is_stripes_and_covers_every_synced_type() -> None:
    resources = fixtures()
    assert {"customer", "subscription", "invoice", "discount", "coupon", "event"} <= set(resources)
    assert "source" in resources["discount"] and "coupon" not in resources["discount"]


def test_objects_at_the_pinned_version_have_exactly_stripes_fields(emulator: Emulator) -> None:
    emulator.tick(60)
    client = sdk(emulator)
    diff = ShapeDiff()
    for resource, objects in _objects_by_resource(client).items():
        assert objects, f"the emulator served no {resource}"
        for obj in objects:
            diff += compare(resource, obj)
    assert not diff.stale, f"fields Stripe no longer has: {sorted(diff.stale)}"
    assert not diff.missing - MAY_BE_MISSING, f"missing: {sorted(diff.missing - MAY_BE_MISSING)}"


def test_the_comparison_catches_a_removed_field_and_a_missing_one() -> None:
    invoice = dict(fixtures()["invoice"])
    invoice["paid"] = True  # removed in 2025-03-31.basil
    del invoice["effective_at"]
    diff = compare("invoice", invoice)
    assert diff.stale == {"invoice.paid"}
    assert diff.missing == {"invoice.effective_at"}
