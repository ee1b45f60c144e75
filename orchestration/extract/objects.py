"""One declarative record per Stripe object we sync: adding an object means adding one record."""

# Adding an object type: one ObjectSpec in OBJECTS below (its table, paths, permission, event
# types, description), its table in sql/create_raw_tables.sql (tests/extract/test_objects.py
# holds the two together) and its staging model in dbt_project/models/staging/stripe/. The
# webhook event list (webhooks/event_types.py), the Dagster asset specs (defs/assets/stripe_raw.py),
# the sync state rows and the backfill and event replay all derive from the record.

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from orchestration.core.api_versions import coupon_is_an_id


class ExpansionContext(Protocol):
    """What decides an object's expansions: the API version, and whether the key reads coupons."""

    api_version: str

    @property
    def coupons_readable(self) -> bool: ...


@dataclass(frozen=True)
class ObjectSpec:
    """How one Stripe object is listed, retrieved, recognised in events and stored."""

    table: str  # stripe_raw.<table>; also the sync_state.object name
    stripe_object: str  # the `object` field of its JSON ("checkout.session")
    list_path: str
    retrieve_path: str  # with {id}
    permission: str  # restricted-key permission, in the Dashboard's wording
    # The event types whose data.object is this object: the webhook endpoint subscribes to them
    # (webhooks/event_types.py) and events.py applies them.
    event_types: tuple[str, ...]
    # What a user should know about stripe_raw.<table>: its Dagster asset's description.
    description: str
    list_params: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Where the object keeps its discounts, whose coupon terms MRR needs: "discounts" (a list of
    # ids unless expanded) or "discount" (one object). See `expand_for`.
    discounts_field: str | None = None
    # Event type whose arrival means the object is gone. None when "deleted" means something else
    # (customer.subscription.deleted is a cancellation: the subscription still exists).
    delete_event: str | None = None
    # Stripe lists are newest first; those with a `created` filter are sliced into windows read
    # concurrently, the others are paged one request at a time (a list without the filter would
    # be the backfill's long pole).
    windowed: bool = True
    # Stripe creates some objects without an event (there is no checkout.session.created; an
    # abandoned session may never have one): incremental syncs also read the head of the list,
    # newest first, down to the first object already stored (usually one page).
    created_without_event: bool = False

    def expand_for(self, api: ExpansionContext) -> list[str]:
        """Expansions of a retrieve (a list prefixes each with "data."): discounts with their
        coupon's terms. Since 2025-09-30.clover a discount names its coupon by id
        (`source.coupon`); expanding it is four levels deep in a list, Stripe's maximum, and
        needs Coupons: Read. Without it the discounts still come (start, end, coupon id) and the
        marts flag the customer instead of guessing the terms."""
        if self.discounts_field is None:
            return []
        if coupon_is_an_id(api.api_version) and api.coupons_readable:
            return [f"{self.discounts_field}.source.coupon"]
        # `discount` is always an object; `discounts` lists ids unless expanded.
        return ["discounts"] if self.discounts_field == "discounts" else []

    def lacks_coupon_terms(self, obj: dict[str, Any], api: ExpansionContext) -> bool:
        """True when a re-read with `expand_for`'s expansions would add to the object (a copy
        from an event): a discount listed by id, or a coupon named by id that the key may
        expand (without Coupons: Read the re-read would name it by id again)."""
        if self.discounts_field is None:
            return False
        value = obj.get(self.discounts_field)
        discounts = value if isinstance(value, list) else [value] if value else []
        if any(not isinstance(d, dict) for d in discounts):
            return True
        return any(not _has_coupon_terms(d) for d in discounts) and api.coupons_readable


def _has_coupon_terms(discount: dict[str, Any]) -> bool:
    coupon = discount.get("coupon") or (discount.get("source") or {}).get("coupon")
    return isinstance(coupon, dict)


OBJECTS: tuple[ObjectSpec, ...] = (
    ObjectSpec(
        table="customers",
        stripe_object="customer",
        list_path="/v1/customers",
        retrieve_path="/v1/customers/{id}",
        permission="Customers: Read",
        event_types=("customer.created", "customer.updated", "customer.deleted"),
        description=(
            "Stripe customers (cus_…), the full object as JSON; deleted ones kept, flagged."
        ),
        delete_event="customer.deleted",
        # A coupon applied to the customer discounts its subscriptions that have none.
        discounts_field="discount",
    ),
    ObjectSpec(
        table="subscriptions",
        stripe_object="subscription",
        list_path="/v1/subscriptions",
        retrieve_path="/v1/subscriptions/{id}",
        permission="Subscriptions: Read",
        event_types=(
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "customer.subscription.paused",
            "customer.subscription.resumed",
            "customer.subscription.pending_update_applied",
            "customer.subscription.pending_update_expired",
            "customer.subscription.trial_will_end",
        ),
        description="Stripe subscriptions (sub_…) with their items, prices and discounts.",
        # status=all: canceled and incomplete_expired ones too (churned customers need them).
        list_params=MappingProxyType({"status": "all"}),
        # Items and their prices come embedded (the first 10: items.py completes the rest).
        discounts_field="discounts",
    ),
    ObjectSpec(
        table="invoices",
        stripe_object="invoice",
        list_path="/v1/invoices",
        retrieve_path="/v1/invoices/{id}",
        permission="Invoices: Read",
        # Not invoice.upcoming: its object is a preview without an id, nothing to store.
        event_types=(
            "invoice.created",
            "invoice.updated",
            "invoice.deleted",
            "invoice.finalized",
            "invoice.finalization_failed",
            "invoice.marked_uncollectible",
            "invoice.overdue",
            "invoice.overpaid",
            "invoice.paid",
            "invoice.payment_action_required",
            "invoice.payment_attempt_required",
            "invoice.payment_failed",
            "invoice.payment_succeeded",
            "invoice.sent",
            "invoice.voided",
            "invoice.will_be_due",
        ),
        description="Stripe invoices (in_…), the full object as JSON.",
        delete_event="invoice.deleted",
    ),
    ObjectSpec(
        table="charges",
        stripe_object="charge",
        list_path="/v1/charges",
        retrieve_path="/v1/charges/{id}",
        permission="Charges: Read",
        # Not charge.dispute.* nor charge.refund.updated: their object is a dispute or a refund.
        event_types=(
            "charge.captured",
            "charge.expired",
            "charge.failed",
            "charge.pending",
            "charge.refunded",
            "charge.succeeded",
            "charge.updated",
        ),
        description="Stripe charges (ch_…/py_…): the source of last amount paid.",
    ),
    ObjectSpec(
        table="prices",
        stripe_object="price",
        list_path="/v1/prices",
        retrieve_path="/v1/prices/{id}",
        permission="Prices: Read",
        event_types=("price.created", "price.updated", "price.deleted"),
        description="Stripe prices (price_…): plan amounts, currencies and intervals.",
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
        event_types=("product.created", "product.updated", "product.deleted"),
        description="Stripe products (prod_…): the names behind subscription prices.",
        delete_event="product.deleted",
    ),
    ObjectSpec(
        table="checkout_sessions",
        stripe_object="checkout.session",
        list_path="/v1/checkout/sessions",
        retrieve_path="/v1/checkout/sessions/{id}",
        permission="Checkout Sessions: Read",
        event_types=(
            "checkout.session.completed",
            "checkout.session.expired",
            "checkout.session.async_payment_succeeded",
            "checkout.session.async_payment_failed",
        ),
        description="Stripe Checkout Sessions (cs_…).",
        # `created` filters this list in today's API (the 2020-08-27 spec lacks it).
        created_without_event=True,
    ),
)

# Discount events are no object we sync: a discount lives inside its customer's (and its
# subscription's) record, so these events only say which records to re-read (events.py's
# _touched). The webhook endpoint subscribes to them next to the objects' own event types.
DISCOUNT_EVENT_TYPES: tuple[str, ...] = (
    "customer.discount.created",
    "customer.discount.updated",
    "customer.discount.deleted",
)

BY_TABLE: MappingProxyType[str, ObjectSpec] = MappingProxyType({s.table: s for s in OBJECTS})
BY_STRIPE_OBJECT: MappingProxyType[str, ObjectSpec] = MappingProxyType(
    {s.stripe_object: s for s in OBJECTS}
)

EVENTS_PERMISSION = "Events: Read"
# Not required: without it, coupon terms can't be read on API versions that no longer inline them
# (see ObjectSpec.expand_for), and the customers they concern are flagged.
COUPONS_PERMISSION = "Coupons: Read"
WEBHOOKS_WRITE_PERMISSION = "Webhook Endpoints: Write"

# The events Stripe still holds (its last 30 days) when an import-existing backfill starts: listed
# by the backfill like an object (created windows, shared request budget, progress committed with
# the rows) but stored for history only, never applied to the object tables (sync.py's
# _history_plan). Not in OBJECTS: events are no object table of their own.
EVENT_HISTORY = ObjectSpec(
    table="events",
    stripe_object="event",
    list_path="/v1/events",
    retrieve_path="/v1/events/{id}",
    permission=EVENTS_PERMISSION,
    event_types=(),  # read from the events API itself, never received as an event
    description=(
        "Stripe events (evt_…) replayed by incremental syncs; the customer feed reads them."
    ),
)

# The stripe_raw tables of Stripe objects, each described by its record: the synced objects and
# the events. Each has a sync_state row; the `events` row carries the events cursor.
RAW_OBJECTS: tuple[ObjectSpec, ...] = (*OBJECTS, EVENT_HISTORY)
STATE_OBJECTS: tuple[str, ...] = tuple(s.table for s in RAW_OBJECTS)
