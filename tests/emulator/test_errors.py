"""Errors map to the SDK's exception classes, with Stripe's shapes, codes and messages."""

from __future__ import annotations

import httpx
import pytest
import stripe

from orchestration.emulator import PERMISSIONS, Emulator
from tests.emulator.conftest import sdk

# (permission, a call that needs it)
NEEDS = {
    "Charges: Read": lambda c: c.v1.charges.list(),
    "Customers: Read": lambda c: c.v1.customers.list(),
    "Events: Read": lambda c: c.v1.events.list(),
    "Checkout Sessions: Read": lambda c: c.v1.checkout.sessions.list(),
    "Invoices: Read": lambda c: c.v1.invoices.list(),
    "Prices: Read": lambda c: c.v1.prices.list(),
    "Coupons: Read": lambda c: c.v1.coupons.list(),
    "Subscriptions: Read": lambda c: c.v1.subscriptions.list(),
    "Webhook Endpoints: Write": lambda c: c.v1.webhook_endpoints.create(
        {"url": "https://example.com/hook", "enabled_events": ["*"]}
    ),
}


def test_every_contract_permission_is_known() -> None:
    assert set(NEEDS) == set(PERMISSIONS)


@pytest.mark.parametrize("missing", sorted(NEEDS), ids=sorted(NEEDS))
def test_restricted_key_without_a_permission_gets_permission_error(
    shared: Emulator, missing: str
) -> None:
    key = shared.restricted_key(set(PERMISSIONS) - {missing})
    assert key.startswith("rk_test_")
    client = sdk(shared, key)
    with pytest.raises(stripe.PermissionError) as err:
        NEEDS[missing](client)
    assert err.value.http_status == 403
    assert f"'{PERMISSIONS[missing]}' permission" in str(err.value)
    for other, call in NEEDS.items():
        if other not in (missing, "Webhook Endpoints: Write"):
            call(client)


def test_expanding_a_coupon_needs_coupons_read_as_on_stripe(shared: Emulator) -> None:
    # Stripe: an expanded object needs the permission that reads it.
    client = sdk(shared, shared.restricted_key(set(PERMISSIONS) - {"Coupons: Read"}))
    path = "data.discounts.source.coupon"
    with pytest.raises(stripe.PermissionError, match="rak_coupon_read"):
        client.v1.subscriptions.list({"status": "all", "limit": 100, "expand": [path]})
    # The discounts themselves need no more than the subscription.
    subs = client.v1.subscriptions.list(
        {"status": "all", "limit": 100, "expand": ["data.discounts"]}
    )
    coupons = [d.source.coupon for s in subs.data for d in s.discounts]
    assert coupons and all(isinstance(c, str) for c in coupons)


def test_restricted_key_sees_its_account(shared: Emulator) -> None:
    client = sdk(shared, shared.restricted_key({"Customers: Read"}))
    assert client.v1.accounts.retrieve_current().id == shared.account_id


def test_unknown_key_is_an_authentication_error(shared: Emulator) -> None:
    with pytest.raises(stripe.AuthenticationError) as err:
        sdk(shared, "sk_test_nope").v1.customers.list()
    assert err.value.http_status == 401
    assert "Invalid API Key provided" in str(err.value)


def test_missing_key_is_401(shared: Emulator) -> None:
    response = httpx.get(f"{shared.url}/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_id_is_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert err.value.http_status == 404
    assert err.value.code == "resource_missing"
    assert err.value.param == "id"


def test_unknown_route_is_404(shared: Emulator, client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="Unrecognized request URL"):
        client.raw_request("get", "/v1/unicorns")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"colour": "red"}, "colour"),
        ({"created": {"after": 1}}, "created[after]"),
        ({"starting_after": "cus_nope"}, "starting_after"),
        ({"starting_after": "a", "ending_before": "b"}, "ending_before"),
    ],
    ids=["limit-0", "limit-101", "limit-text", "unknown", "created-op", "cursor", "both"],
)
def test_bad_params_are_invalid_request_errors(
    client: stripe.StripeClient, params: dict, param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.raw_request("get", "/v1/customers", **params)
    assert err.value.param == param
    assert err.value.http_status in (400, 404)


def test_invalid_subscription_status_is_400(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.subscriptions.list({"status": "happy"})
    assert err.value.http_status == 400 and err.value.param == "status"


def test_error_body_has_stripe_shape_and_request_id(shared: Emulator) -> None:
    response = httpx.get(
        f"{shared.url}/v1/customers/cus_nope",
        headers={"Authorization": f"Bearer {shared.test_key}"},
    )
    error = response.json()["error"]
    assert {"type", "code", "message", "param"} <= set(error)
    assert response.headers["request-id"].startswith("req_")


def test_rate_limit_answers_429_rate_limit_error(emulator_factory) -> None:
    emu = emulator_factory(rate_limit=5)
    client = sdk(emu)
    with pytest.raises(stripe.RateLimitError) as err:
        for _ in range(20):
            client.v1.customers.list({"limit": 1})
    assert err.value.http_status == 429
    assert err.value.json_body["error"]["code"] == "rate_limit"
    assert err.value.json_body["error"]["type"] == "rate_limit_error"
    assert emu.stats()["rate_limited"] >= 1


def test_rate_limits_are_per_mode(emulator_factory) -> None:
    emu = emulator_factory(rate_limit=3, rate_limit_live=1000)
    live = sdk(emu, emu.live_key)
    for _ in range(20):
        live.v1.customers.list({"limit": 1})


def test_injected_500_is_api_error(emulator_factory) -> None:
    emu = emulator_factory(fault_rate=1.0, fault_kinds=("500",))
    with pytest.raises(stripe.APIError) as err:
        sdk(emu).v1.customers.list()
    assert err.value.http_status == 500


def test_injected_429_is_rate_limit_error(emulator_factory) -> None:
    emu = emulator_factory(fault_rate=1.0, fault_kinds=("429",))
    with pytest.raises(stripe.RateLimitError):
        sdk(emu).v1.customers.list()


def test_injected_reset_is_a_connection_error(emulator_factory) -> None:
    emu = emulator_factory(fault_rate=1.0, fault_kinds=("reset",))
    with pytest.raises(stripe.APIConnectionError):
        sdk(emu).v1.customers.list()
    assert emu.stats()["faults"] == {"reset": 1}


def test_injected_timeout_times_the_client_out(emulator_factory) -> None:
    emu = emulator_factory(fault_rate=1.0, fault_kinds=("timeout",))
    emu.limits.timeout_seconds = 1.0
    client = stripe.StripeClient(
        emu.test_key,
        base_addresses={"api": emu.url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=0.3),
    )
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.list()


def test_faults_are_reproducible_by_seed(emulator_factory) -> None:
    def outcomes(emu: Emulator) -> list[str]:
        client = sdk(emu)
        seen = []
        for _ in range(30):
            try:
                client.v1.customers.list({"limit": 1})
                seen.append("ok")
            except stripe.StripeError as err:
                seen.append(type(err).__name__)
        return seen

    first = outcomes(emulator_factory(fault_rate=0.3, seed=3, fault_kinds=("429", "500")))
    second = outcomes(emulator_factory(fault_rate=0.3, seed=3, fault_kinds=("429", "500")))
    assert first == second
    assert "ok" in first and len(set(first)) > 1


def test_set_faults_changes_behaviour_at_runtime(emulator: Emulator) -> None:
    client = sdk(emulator)
    client.v1.customers.list()
    emulator.set_faults(1.0)
    emulator.limits.fault_kinds = ("500",)
    with pytest.raises(stripe.APIError):
        client.v1.customers.list()
    emulator.set_faults(0.0)
    client.v1.customers.list()


def test_other_account_key_sees_another_account(shared: Emulator) -> None:
    other = sdk(shared, shared.other_account_key())
    assert other.v1.accounts.retrieve_current().id != shared.account_id
    assert sdk(shared).v1.accounts.retrieve_current().id == shared.account_id
    assert sdk(shared, shared.live_key).v1.accounts.retrieve_current().id == shared.account_id
    theirs = {c.id for c in other.v1.customers.list({"limit": 100}).data}
    assert theirs and not theirs & set(shared.objects("customers"))


def test_stats_count_requests_by_route(emulator: Emulator) -> None:
    client = sdk(emulator)
    client.v1.customers.list()
    client.v1.customers.retrieve(next(iter(emulator.objects("customers"))))
    stats = httpx.get(f"{emulator.url}/_emulator/stats").json()
    assert stats["by_route"]["GET /v1/customers"] == 1
    assert stats["by_route"]["GET /v1/customers/:id"] == 1
    assert stats == emulator.stats()


def test_webhook_write_permission_implies_read(shared: Emulator) -> None:
    writer = sdk(shared, shared.restricted_key({"Webhook Endpoints: Write"}))
    writer.v1.webhook_endpoints.list()
    reader = sdk(shared, shared.restricted_key({"Customers: Read"}))
    with pytest.raises(stripe.PermissionError, match="rak_webhook_read"):
        reader.v1.webhook_endpoints.list()


def test_live_restricted_key_sees_live_data(shared: Emulator) -> None:
    key = shared.restricted_key({"Customers: Read"}, livemode=True)
    assert key.startswith("rk_live_")
    ids = {c.id for c in sdk(shared, key).v1.customers.list({"limit": 100}).data}
    assert ids and ids <= set(shared.objects("customers", livemode=True))
