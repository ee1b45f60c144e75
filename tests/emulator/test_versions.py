"""API versions: the basil (2025-03-31) shape and the older one, per request and per account."""

from __future__ import annotations

import httpx
import pytest
import stripe

from orchestration.emulator import Emulator
from tests.emulator.conftest import sdk

LEGACY = "2024-06-20"


def _invoice_with_subscription(emu: Emulator) -> str:
    return next(i for i, o in emu.objects("invoices").items() if o["parent"])


def test_current_shape_has_periods_on_items_and_invoice_parent(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    sub = client.raw_request("get", "/v1/subscriptions", limit=1).data["data"][0]
    assert "current_period_start" not in sub
    assert (
        sub["items"]["data"][0]["current_period_start"]
        <= sub["items"]["data"][0]["current_period_end"]
    )
    inv = client.v1.invoices.retrieve(_invoice_with_subscription(shared))
    assert "subscription" not in inv
    assert inv.parent.subscription_details.subscription.startswith("sub_")


def test_legacy_version_header_serves_the_old_shape(shared: Emulator) -> None:
    old = sdk(shared, stripe_version=LEGACY)
    sub = old.raw_request("get", "/v1/subscriptions", limit=1).data["data"][0]
    assert sub["current_period_start"] and sub["current_period_end"]
    assert "current_period_start" not in sub["items"]["data"][0]
    inv_id = _invoice_with_subscription(shared)
    inv = old.v1.invoices.retrieve(inv_id)
    assert (
        inv.subscription
        == shared.objects("invoices")[inv_id]["parent"]["subscription_details"]["subscription"]
    )
    assert "parent" not in inv


def test_account_default_version_applies_without_header(emulator_factory) -> None:
    emu = emulator_factory(api_version=LEGACY)
    headers = {"Authorization": f"Bearer {emu.test_key}"}
    response = httpx.get(f"{emu.url}/v1/subscriptions", params={"limit": 1}, headers=headers)
    assert response.headers["stripe-version"] == LEGACY
    assert "current_period_start" in response.json()["data"][0]
    # The SDK always sends its own version, which wins over the account default.
    sub = sdk(emu).raw_request("get", "/v1/subscriptions", limit=1).data["data"][0]
    assert "current_period_start" not in sub


def test_events_keep_the_account_version_whatever_the_request_asks(emulator_factory) -> None:
    emu = emulator_factory(api_version=LEGACY)
    emu.tick(30)
    events = sdk(emu).raw_request("get", "/v1/events", limit=100).data["data"]
    assert {e["api_version"] for e in events} == {LEGACY}
    subs = [e for e in events if e["type"].startswith("customer.subscription.")]
    assert subs and all("current_period_start" in e["data"]["object"] for e in subs)


def test_invalid_version_is_rejected(shared: Emulator) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="Invalid Stripe API version"):
        sdk(shared, stripe_version="yesterday").v1.customers.list()
