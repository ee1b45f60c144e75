"""List semantics exactly like Stripe: order, paging, created filters, statuses, expansions."""

from __future__ import annotations

import pytest
import stripe

from orchestration.emulator import Emulator
from tests.emulator.conftest import sdk

TABLE_SERVICES = [
    ("customers", "customers"),
    ("invoices", "invoices"),
    ("charges", "charges"),
    ("prices", "prices"),
    ("products", "products"),
    ("checkout_sessions", "checkout.sessions"),
]


def _service(client: stripe.StripeClient, dotted: str) -> object:
    service = client.v1
    for part in dotted.split("."):
        service = getattr(service, part)
    return service


def _raw_list(client: stripe.StripeClient, path: str, **params: object) -> list[dict]:
    """Every object of a list endpoint as plain dicts, paging with starting_after."""
    out: list[dict] = []
    while True:
        page = client.raw_request("get", path, **params).data
        out.extend(page["data"])
        if not page["has_more"]:
            return out
        params["starting_after"] = page["data"][-1]["id"]


@pytest.mark.parametrize(("table", "service"), TABLE_SERVICES, ids=[t for t, _ in TABLE_SERVICES])
def test_auto_pagination_returns_every_object_once_newest_first(
    shared: Emulator, client: stripe.StripeClient, table: str, service: str
) -> None:
    listed = list(_service(client, service).list({"limit": 7}).auto_paging_iter())
    ids = [o.id for o in listed]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(shared.objects(table))
    created = [o.created for o in listed]
    assert created == sorted(created, reverse=True)


@pytest.mark.parametrize(
    ("table", "path"),
    [
        ("customers", "/v1/customers"),
        ("subscriptions", "/v1/subscriptions?status=all"),
        ("invoices", "/v1/invoices"),
        ("charges", "/v1/charges"),
        ("prices", "/v1/prices"),
        ("products", "/v1/products"),
        ("checkout_sessions", "/v1/checkout/sessions"),
    ],
    ids=lambda v: v if not v.startswith("/") else "",
)
def test_list_and_retrieve_match_ground_truth(
    shared: Emulator, client: stripe.StripeClient, table: str, path: str
) -> None:
    truth = shared.objects(table)
    base, _, query = path.partition("?")
    params = dict(p.split("=") for p in query.split("&")) if query else {}
    listed = _raw_list(client, base, limit=100, **params)
    assert {o["id"] for o in listed} == set(truth)
    for obj in listed:
        assert obj == truth[obj["id"]]
    some = listed[len(listed) // 2]["id"]
    assert client.raw_request("get", f"{base}/{some}").data == truth[some]


def test_pagination_ties_on_the_same_second_neither_skip_nor_repeat(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    created = [c["created"] for c in shared.objects("customers").values()]
    assert len(created) - len(set(created)) >= 5, "the dataset must contain created ties"
    ids = [c["id"] for c in _raw_list(client, "/v1/customers", limit=1)]
    assert sorted(ids) == sorted(shared.objects("customers"))


def test_ending_before_pages_backwards(client: stripe.StripeClient) -> None:
    everything = _raw_list(client, "/v1/customers", limit=100)
    pivot = everything[25]["id"]
    page = client.raw_request("get", "/v1/customers", limit=10, ending_before=pivot).data
    assert [c["id"] for c in page["data"]] == [c["id"] for c in everything[15:25]]
    assert page["has_more"] is True
    first = client.raw_request("get", "/v1/customers", limit=10, ending_before=everything[3]["id"])
    assert [c["id"] for c in first.data["data"]] == [c["id"] for c in everything[:3]]
    assert first.data["has_more"] is False


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
def test_created_filters(shared: Emulator, client: stripe.StripeClient, op: str) -> None:
    created = sorted(c["created"] for c in shared.objects("customers").values())
    pivot = created[len(created) // 2]
    check = {"gt": pivot.__lt__, "gte": pivot.__le__, "lt": pivot.__gt__, "lte": pivot.__ge__}[op]
    expected = {i for i, c in shared.objects("customers").items() if check(c["created"])}
    got = {c["id"] for c in _raw_list(client, "/v1/customers", limit=100, created={op: pivot})}
    assert got == expected


def test_created_as_integer_means_exactly_that_second(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    some = next(iter(shared.objects("customers").values()))
    got = _raw_list(client, "/v1/customers", created=some["created"])
    assert some["id"] in {c["id"] for c in got}
    assert {c["created"] for c in got} == {some["created"]}


def test_subscriptions_hide_canceled_unless_asked(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    truth = shared.objects("subscriptions")
    default = {s["id"] for s in _raw_list(client, "/v1/subscriptions", limit=100)}
    everything = {s["id"] for s in _raw_list(client, "/v1/subscriptions", limit=100, status="all")}
    canceled = {s["id"] for s in _raw_list(client, "/v1/subscriptions", status="canceled")}
    assert everything == set(truth)
    assert canceled == {i for i, s in truth.items() if s["status"] == "canceled"}
    assert default == everything - canceled
    assert canceled


@pytest.mark.parametrize(
    "status",
    ["trialing", "active", "past_due", "unpaid", "incomplete", "incomplete_expired", "paused"],
)
def test_every_subscription_status_exists_and_filters(
    shared: Emulator, client: stripe.StripeClient, status: str
) -> None:
    got = _raw_list(client, "/v1/subscriptions", limit=100, status=status)
    assert got, f"no {status} subscription generated"
    assert {s["status"] for s in got} == {status}


def test_customer_filter_on_owned_objects(shared: Emulator, client: stripe.StripeClient) -> None:
    owner = next(s["customer"] for s in shared.objects("subscriptions").values())
    for path, table in [
        ("/v1/subscriptions", "subscriptions"),
        ("/v1/invoices", "invoices"),
        ("/v1/charges", "charges"),
        ("/v1/checkout/sessions", "checkout_sessions"),
    ]:
        params = {"customer": owner, **({"status": "all"} if table == "subscriptions" else {})}
        got = {o["id"] for o in _raw_list(client, path, **params)}
        expected = {i for i, o in shared.objects(table).items() if o["customer"] == owner}
        assert got == expected, path


def test_status_filter_on_invoices_and_sessions(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    paid = {i["id"] for i in _raw_list(client, "/v1/invoices", limit=100, status="open")}
    assert paid == {i for i, o in shared.objects("invoices").items() if o["status"] == "open"}
    done = {s["id"] for s in _raw_list(client, "/v1/checkout/sessions", status="complete")}
    truth = shared.objects("checkout_sessions")
    assert done == {i for i, o in truth.items() if o["status"] == "complete"}


def test_expand_nested_list_paths(shared: Emulator, client: stripe.StripeClient) -> None:
    page = client.v1.subscriptions.list({"limit": 5, "expand": ["data.customer"]})
    assert all(sub.customer.object == "customer" for sub in page.data)
    # Four levels is Stripe's maximum, `data.` counted: a product through a list's items is five.
    with pytest.raises(stripe.InvalidRequestError, match="more than 4 levels"):
        client.v1.subscriptions.list({"limit": 5, "expand": ["data.items.data.price.product"]})
    sub = client.v1.subscriptions.retrieve(
        page.data[0].id, {"expand": ["items.data.price.product"]}
    )
    price = sub["items"].data[0].price
    assert price.object == "price"
    assert price.product.object == "product"


def test_expand_on_retrieve(shared: Emulator, client: stripe.StripeClient) -> None:
    sub_id = next(i for i, s in shared.objects("subscriptions").items() if s["latest_invoice"])
    sub = client.v1.subscriptions.retrieve(sub_id, {"expand": ["latest_invoice", "customer"]})
    assert sub.latest_invoice.object == "invoice"
    assert sub.customer.id == shared.objects("subscriptions")[sub_id]["customer"]


def test_expand_without_data_prefix_on_a_list_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError, match=r"data\.customer"):
        client.v1.subscriptions.list({"expand": ["customer"]})


def test_expand_of_a_plain_field_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded") as err:
        client.v1.customers.list({"expand": ["data.email"]})
    assert err.value.param == "expand"


def test_deleted_customers_vanish_from_lists_and_retrieve_as_stubs(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    deleted = shared.deleted_ids("customers")
    assert deleted
    listed = {c["id"] for c in _raw_list(client, "/v1/customers", limit=100)}
    assert not deleted & listed
    some = sorted(deleted)[0]
    stub = client.raw_request("get", f"/v1/customers/{some}").data
    assert stub == {"id": some, "object": "customer", "deleted": True}


def test_subscription_items_and_invoice_lines(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    sub = next(s for s in shared.objects("subscriptions").values() if s["latest_invoice"])
    items = client.v1.subscription_items.list({"subscription": sub["id"]})
    assert [i.id for i in items.data] == [i["id"] for i in sub["items"]["data"]]
    one = client.v1.subscription_items.retrieve(items.data[0].id)
    assert one.subscription == sub["id"]
    lines = client.v1.invoices.line_items.list(sub["latest_invoice"])
    assert lines.data and lines.data[0].object == "line_item"


def test_plans_and_coupons_are_listed(client: stripe.StripeClient) -> None:
    plans = list(client.v1.plans.list({"limit": 100}).auto_paging_iter())
    intervals = {(p.interval, p.interval_count) for p in plans}
    assert {("month", 1), ("year", 1), ("week", 1), ("day", 1), ("month", 3)} <= intervals
    assert {p.usage_type for p in plans} == {"licensed", "metered"}
    coupons = client.v1.coupons.list({"limit": 100}).data
    assert {c.duration for c in coupons} == {"once", "repeating", "forever"}


def test_catalog_has_zero_and_three_decimal_currencies(client: stripe.StripeClient) -> None:
    currencies = {p.currency for p in client.v1.prices.list({"limit": 100}).data}
    assert {"usd", "eur", "jpy", "kwd"} <= currencies


def test_subscriptions_list_discount_ids(client: stripe.StripeClient) -> None:
    subs = client.raw_request("get", "/v1/subscriptions", limit=100, status="all").data["data"]
    discounted = [s for s in subs if s["discounts"]]
    assert discounted
    assert all(isinstance(d, str) and d.startswith("di_") for s in subs for d in s["discounts"])
    # 2025-03-31.basil removed the singular `discount`.
    assert all("discount" not in s for s in subs)


def test_discounts_expand_to_discount_objects_with_the_coupon_id_in_source(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    sub_id = next(i for i, s in shared.objects("subscriptions").items() if s["discounts"])
    sub = client.v1.subscriptions.retrieve(sub_id, {"expand": ["discounts"]})
    discount = sub.discounts[0]
    assert discount.object == "discount" and discount.subscription == sub_id
    assert "coupon" not in discount and discount.source.type == "coupon"
    coupon_id = discount.source.coupon
    assert isinstance(coupon_id, str)
    sub = client.v1.subscriptions.retrieve(sub_id, {"expand": ["discounts.source.coupon"]})
    coupon = sub.discounts[0].source.coupon
    assert coupon.object == "coupon" and coupon.id == coupon_id
    assert coupon.duration in {"once", "repeating", "forever"}


def test_discounts_before_clover_inline_their_coupon(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    sub_id = next(i for i, s in shared.objects("subscriptions").items() if s["discounts"])
    basil = sdk(shared, stripe_version="2025-03-31.basil")
    sub = basil.v1.subscriptions.retrieve(sub_id, {"expand": ["discounts"]})
    assert sub.discounts[0].coupon.object == "coupon" and "source" not in sub.discounts[0]
    assert "discount" not in sub
    legacy = sdk(shared, stripe_version="2024-06-20").v1.subscriptions.retrieve(sub_id)
    assert legacy.discount.coupon.object == "coupon"
    assert legacy.discounts == [legacy.discount.id]


def test_live_key_sees_only_live_data(shared: Emulator) -> None:
    live = sdk(shared, shared.live_key)
    ids = {c.id for c in live.v1.customers.list({"limit": 100}).auto_paging_iter()}
    assert ids == set(shared.objects("customers", livemode=True))
    assert not ids & set(shared.objects("customers"))
    test_id = next(iter(shared.objects("customers")))
    with pytest.raises(stripe.InvalidRequestError):
        live.v1.customers.retrieve(test_id)


def test_a_subscription_embeds_ten_items_and_lists_the_rest(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    """Like Stripe, a subscription embeds at most 10 items (has_more, total_count, url); the
    items list pages through all of them."""
    wide = [s for s in shared.objects("subscriptions").values() if s["items"]["has_more"]]
    assert wide, "the generator made no subscription with more than 10 items"
    sub = wide[0]
    embedded = sub["items"]
    assert len(embedded["data"]) == 10
    assert embedded["total_count"] > 10
    assert embedded["url"] == f"/v1/subscription_items?subscription={sub['id']}"
    listed = list(
        client.v1.subscription_items.list(
            {"subscription": sub["id"], "limit": 7}
        ).auto_paging_iter()
    )
    ids = [i.id for i in listed]
    assert len(ids) == len(set(ids)) == embedded["total_count"]
    assert ids[:10] == [i["id"] for i in embedded["data"]]
    assert {i.subscription for i in listed} == {sub["id"]}
    complete = shared.objects("subscriptions", all_items=True)[sub["id"]]["items"]
    assert [i["id"] for i in complete["data"]] == ids and complete["has_more"] is False
    assert client.v1.subscription_items.retrieve(ids[-1]).id == ids[-1]  # beyond the embedded ten
    prices = [i.price.id for i in listed]
    assert len(prices) == len(set(prices)), "Stripe allows each price once per subscription"
    assert {(i.price.currency, i.price.recurring.interval) for i in listed} == {("usd", "month")}


def test_an_invoice_embeds_ten_lines_and_lists_the_rest(
    shared: Emulator, client: stripe.StripeClient
) -> None:
    wide = next(s for s in shared.objects("subscriptions").values() if s["items"]["has_more"])
    invoice = shared.objects("invoices")[wide["latest_invoice"]]
    assert invoice["lines"]["has_more"] is True and len(invoice["lines"]["data"]) == 10
    lines = list(client.v1.invoices.line_items.list(invoice["id"], {"limit": 100}).data)
    assert len(lines) == invoice["lines"]["total_count"] > 10
    assert sum(line.amount for line in lines) == invoice["subtotal"]
