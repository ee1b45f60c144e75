"""Field-by-field comparison of an object with Stripe's shape (its examples and the SDK's types).

Stripe's published example objects (`tests/fixtures/stripe/fixtures3.json`, from Stripe's openapi
repository) show every field of each resource in the current API shape; the locked stripe SDK's
typed classes list the top-level fields of each resource at the version it pins. A field the
emulator renders that neither knows is stale (Stripe removed or never had it); a field both know
that the emulator lacks is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import stripe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stripe" / "fixtures3.json"

# Nested lists whose entries are resources of their own.
LIST_RESOURCES = {("subscription", "items"): "subscription_item", ("invoice", "lines"): "line_item"}
SDK_CLASSES = {
    "customer": stripe.Customer,
    "subscription": stripe.Subscription,
    "subscription_item": stripe.SubscriptionItem,
    "invoice": stripe.Invoice,
    "line_item": stripe.InvoiceLineItem,
    "charge": stripe.Charge,
    "price": stripe.Price,
    "plan": stripe.Plan,
    "product": stripe.Product,
    "checkout.session": stripe.checkout.Session,
    "event": stripe.Event,
    "discount": stripe.Discount,
    "coupon": stripe.Coupon,
}


@cache
def fixtures() -> dict[str, Any]:
    """Stripe's example object of each resource, by its `object` name."""
    return json.loads(FIXTURES.read_text())["resources"]


# Free-form hashes: their keys are the account's, not Stripe's.
FREE_FORM = {"metadata"}


def sdk_fields(cls: type | None) -> frozenset[str]:
    """Fields the locked SDK declares on a class (empty when there is no class)."""
    if cls is None:
        return frozenset()
    names: set[str] = set()
    for klass in cls.__mro__:
        names |= {n for n in vars(klass).get("__annotations__", {}) if not n.startswith("_")}
    return frozenset(names)


def _nested_class(cls: type | None, key: str) -> type | None:
    """The SDK's class of a nested hash: `price_details` on `Pricing` is `Pricing.PriceDetails`."""
    if cls is None:
        return None
    name = "".join(part.title() for part in key.split("_"))
    # A list's entries are named in the singular: `total_discount_amounts` → TotalDiscountAmount.
    for candidate in (name, name.removesuffix("s")):
        found = getattr(cls, candidate, None)
        if isinstance(found, type):
            return found
    return None


@dataclass
class ShapeDiff:
    """Paths (resource.field.sub) the object has and Stripe doesn't, and the reverse."""

    stale: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)

    def __iadd__(self, other: ShapeDiff) -> ShapeDiff:
        self.stale |= other.stale
        self.missing |= other.missing
        return self


def compare(resource: str, obj: dict[str, Any]) -> ShapeDiff:
    """The differences between an object and Stripe's shape of its resource."""
    return _compare(resource, SDK_CLASSES.get(resource), obj, fixtures()[resource], resource)


def _compare(resource: str, cls: type | None, obj: Any, example: Any, path: str) -> ShapeDiff:
    """`resource` is a resource's name, or the key of a nested hash; `cls` its SDK class."""
    diff = ShapeDiff()
    if not isinstance(obj, dict) or not isinstance(example, dict) or resource in FREE_FORM:
        return diff
    declared = sdk_fields(cls)
    diff.stale |= {f"{path}.{k}" for k in obj if k not in example and k not in declared}
    # Missing: what both sources show (the examples of optional hashes hold every field).
    expected = set(example) & declared if declared else set(example)
    diff.missing |= {f"{path}.{k}" for k in expected if k not in obj}
    for key, value in obj.items():
        nested_cls = _nested_class(cls, key)
        nested_example = example.get(key)
        if nested_example is None and nested_cls is None:
            continue
        diff += _compare_value(resource, nested_cls, key, value, nested_example, f"{path}.{key}")
    return diff


def _compare_value(
    resource: str, cls: type | None, key: str, value: Any, example: Any, path: str
) -> ShapeDiff:
    list_resource = LIST_RESOURCES.get((resource, key))
    if list_resource and isinstance(value, dict):
        diff = ShapeDiff()
        for entry in value.get("data", []):
            diff += compare_entry(list_resource, entry, path + "[]")
        return diff
    if isinstance(value, list):
        diff = ShapeDiff()
        sample = example[0] if isinstance(example, list) and example else None
        for entry in value:
            diff += _compare_nested(cls, key, entry, sample, path + "[]")
        return diff
    return _compare_nested(cls, key, value, example, path)


def compare_entry(resource: str, obj: Any, path: str) -> ShapeDiff:
    """A resource nested in another, compared with its own example and class."""
    return _compare(resource, SDK_CLASSES.get(resource), obj, fixtures()[resource], path)


def _compare_nested(cls: type | None, key: str, value: Any, example: Any, path: str) -> ShapeDiff:
    if not isinstance(value, dict):
        return ShapeDiff()
    # An expanded resource (a discount, a price, an event's object) has an example of its own,
    # whatever the example holds at this place (often null or an id).
    kind = value.get("object")
    if isinstance(kind, str) and kind != "list" and kind in fixtures():
        return compare_entry(kind, value, path)
    return _compare(key, cls, value, example if isinstance(example, dict) else {}, path)
