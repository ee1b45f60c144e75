"""The event types the webhook endpoint subscribes to: those whose data.object is an object we
sync (extract/objects.py), plus discount events, which change a customer's and a subscription's
record (extract/events.py re-reads both). Keyed by the `object` of data.object, so a test can
hold this list and objects.py together: adding an object means adding its events here."""

from __future__ import annotations

from types import MappingProxyType

EVENT_TYPES_BY_OBJECT: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "customer": ("customer.created", "customer.updated", "customer.deleted"),
        "subscription": (
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "customer.subscription.paused",
            "customer.subscription.resumed",
            "customer.subscription.pending_update_applied",
            "customer.subscription.pending_update_expired",
            "customer.subscription.trial_will_end",
        ),
        # Not invoice.upcoming: its object is a preview without an id, nothing to store.
        "invoice": (
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
        # Not charge.dispute.* nor charge.refund.updated: their object is a dispute or a refund.
        "charge": (
            "charge.captured",
            "charge.expired",
            "charge.failed",
            "charge.pending",
            "charge.refunded",
            "charge.succeeded",
            "charge.updated",
        ),
        "price": ("price.created", "price.updated", "price.deleted"),
        "product": ("product.created", "product.updated", "product.deleted"),
        "checkout.session": (
            "checkout.session.completed",
            "checkout.session.expired",
            "checkout.session.async_payment_succeeded",
            "checkout.session.async_payment_failed",
        ),
        "discount": (
            "customer.discount.created",
            "customer.discount.updated",
            "customer.discount.deleted",
        ),
    }
)

CONSUMED_EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(t for types in EVENT_TYPES_BY_OBJECT.values() for t in types)
)
