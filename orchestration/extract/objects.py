"""One declarative record per Stripe object we sync: adding an object means adding one record."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class ObjectSpec:
    """How one Stripe object is listed, retrieved, recognised in events and stored."""

    table: str  # stripe_raw.<table>; also the sync_state.object name
    stripe_object: str  # the `object` field of its JSON ("checkout.session")
    list_path: str
    retrieve_path: str  # with {id}
    permission: str  # restricted-key permission, in the Dashboard's wording
    list_params: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    expand: tuple[str, ...] = ()  # list expansions ("data." prefixed); retrieve drops the prefix
    # Event type whose arrival means the object is gone. None when "deleted" means something else
    # (customer.subscription.deleted is a cancellation: the subscription still exists).
    delete_event: str | None = None
    # Stripe lists are newest first; those with a `created` filter are sliced into windows read
    # concurrently, the others are paged one request at a time (a list without the filter would
    # be the backfill's long pole).
    windowed: bool = True
    # Expanded fields that an event's data.object carries only as ids: an event whose object has
    # any of them non-empty is re-fetched, so stored rows always have one shape.
    expanded_fields: tuple[str, ...] = ()
    # Stripe creates some objects without an event (there is no checkout.session.created; an
    # abandoned session may never have one): incremental syncs also read the head of the list,
    # newest first, down to the first object already stored (usually one page).
    created_without_event: bool = False

    @property
    def retrieve_expand(self) -> list[str]:
        return [name.removeprefix("data.") for name in self.expand]


OBJECTS: tuple[ObjectSpec, ...] = (
    ObjectSpec(
        table="customers",
        stripe_object="customer",
        list_path="/v1/customers",
        retrieve_path="/v1/customers/{id}",
        permission="Customers: Read",
        delete_event="customer.deleted",
    ),
    ObjectSpec(
        table="subscriptions",
        stripe_object="subscription",
        list_path="/v1/subscriptions",
        retrieve_path="/v1/subscriptions/{id}",
        permission="Subscriptions: Read",
        # status=all: canceled and incomplete_expired ones too (churned customers need them).
        list_params=MappingProxyType({"status": "all"}),
        # Discounts inline for MRR; items and their prices come embedded anyway (the first 10:
        # items.py completes the rest).
        expand=("data.discounts",),
        expanded_fields=("discounts",),
    ),
    ObjectSpec(
        table="invoices",
        stripe_object="invoice",
        list_path="/v1/invoices",
        retrieve_path="/v1/invoices/{id}",
        permission="Invoices: Read",
        delete_event="invoice.deleted",
    ),
    ObjectSpec(
        table="charges",
        stripe_object="charge",
        list_path="/v1/charges",
        retrieve_path="/v1/charges/{id}",
        permission="Charges: Read",
    ),
    ObjectSpec(
        table="prices",
        stripe_object="price",
        list_path="/v1/prices",
        retrieve_path="/v1/prices/{id}",
        permission="Prices: Read",
        delete_event="price.deleted",
    ),
    ObjectSpec(
        table="products",
        stripe_object="product",
        list_path="/v1/products",
        retrieve_path="/v1/products/{id}",
        # The Dashboard groups products and prices under one "Products" resource; the contract
        # names the permission after prices.
        permission="Prices: Read",
        delete_event="product.deleted",
    ),
    ObjectSpec(
        table="checkout_sessions",
        stripe_object="checkout.session",
        list_path="/v1/checkout/sessions",
        retrieve_path="/v1/checkout/sessions/{id}",
        permission="Checkout Sessions: Read",
        # `created` filters this list in today's API (the 2020-08-27 spec lacks it).
        created_without_event=True,
    ),
)

BY_TABLE: MappingProxyType[str, ObjectSpec] = MappingProxyType({s.table: s for s in OBJECTS})
BY_STRIPE_OBJECT: MappingProxyType[str, ObjectSpec] = MappingProxyType(
    {s.stripe_object: s for s in OBJECTS}
)

EVENTS_PERMISSION = "Events: Read"
WEBHOOKS_WRITE_PERMISSION = "Webhook Endpoints: Write"
# Tables with a sync_state row; `events` carries the events cursor.
STATE_OBJECTS: tuple[str, ...] = (*(s.table for s in OBJECTS), "events")
