"""The event types the webhook endpoint subscribes to, derived from extract/objects.py: each synced
object's own event types (ObjectSpec.event_types), plus the discount events, which change a
customer's and a subscription's record (extract/events.py re-reads both)."""

from __future__ import annotations

from types import MappingProxyType

from orchestration.extract.objects import DISCOUNT_EVENT_TYPES, OBJECTS

# Keyed by the `object` of data.object, as Stripe files them.
EVENT_TYPES_BY_OBJECT: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {**{spec.stripe_object: spec.event_types for spec in OBJECTS}, "discount": DISCOUNT_EVENT_TYPES}
)

CONSUMED_EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(t for types in EVENT_TYPES_BY_OBJECT.values() for t in types)
)
