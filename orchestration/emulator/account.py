"""One emulated Stripe account: its store, catalog, clock, keys and event log."""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestration.emulator.catalog import plan_from_price
from orchestration.emulator.render import (
    Catalog,
    Shape,
    deleted_stub,
    render,
    render_discount,
    render_invoice_lines,
    render_subscription_items,
    shape_for,
)
from orchestration.emulator.store import KEY_CHARS, Store, encode_key

_ALNUM = bytes.maketrans(b"-_", b"Xq")

# docs/contract.md permission names → Stripe's restricted-key permission ids, which its 403s name.
PERMISSIONS: dict[str, str] = {
    "Charges: Read": "rak_charge_read",
    "Customers: Read": "rak_customer_read",
    "Events: Read": "rak_event_read",
    "Checkout Sessions: Read": "rak_checkout_session_read",
    "Invoices: Read": "rak_invoice_read",
    "Prices: Read": "rak_price_read",
    "Coupons: Read": "rak_coupon_read",
    "Subscriptions: Read": "rak_subscription_read",
    "Webhook Endpoints: Write": "rak_webhook_write",
}


class Clock:
    """Simulated time: real time (or a fixed start) plus whatever was advanced."""

    def __init__(self, now: int | None = None) -> None:
        self.fixed = now
        self.offset = 0

    def now(self) -> int:
        """Current simulated epoch seconds."""
        base = self.fixed if self.fixed is not None else int(time.time())
        return base + self.offset

    def advance(self, seconds: int) -> None:
        """Moves simulated time forward."""
        self.offset += seconds


@dataclass
class KeyInfo:
    """What an API key may do."""

    account: Account
    livemode: bool
    permissions: frozenset[str] | None = None  # None: a secret key with full access


@dataclass
class Account:
    """An account's data and the operations the API and the lifecycle share."""

    id: str
    name: str
    clock: Clock
    default_version: str
    rng: random.Random
    store: Store = field(default_factory=Store)
    catalog: Catalog = field(default_factory=Catalog)
    # Called with each new event (webhook delivery); set by the server.
    on_event: Callable[[dict[str, Any]], int] | None = None
    _id_pool: str = ""
    _id_pos: int = 0

    @property
    def shape(self) -> Shape:
        """The shape of the account's default API version (its events and webhooks use it)."""
        return shape_for(self.default_version)

    def new_id(self, prefix: str, length: int = 24) -> str:
        """A random-looking, seed-deterministic Stripe-style id."""
        pos = self._id_pos
        if pos + length > len(self._id_pool):
            # Encoding random bytes in bulk is ~10x cheaper than per id; generation makes millions.
            raw = base64.urlsafe_b64encode(self.rng.randbytes(3 * 4096))
            self._id_pool, pos = raw.translate(_ALNUM).decode(), 0
        self._id_pos = pos + length
        return prefix + self._id_pool[pos : pos + length]

    def reset_ids(self) -> None:
        """Forgets buffered id randomness (after replacing rng)."""
        self._id_pool, self._id_pos = "", 0

    def new_row_id(self, prefix: str, length: int = 24) -> str:
        """An id for a stored object: random, then its row number (see Store.allocate)."""
        return self.new_id(prefix, length - KEY_CHARS) + encode_key(self.store.allocate())

    def rendered(
        self, kind: str, compact: dict[str, Any], shape: Shape, wire: bool = False
    ) -> dict[str, Any]:
        """The full object of a stored record in the chosen shape.

        `wire` nests catalog objects as pre-serialized JSON: for a body sent as it is.
        """
        if kind == "events":
            return self._render_event(compact, wire)
        if kind == "plans":
            return plan_from_price(compact)
        return render(kind, compact, self.catalog.for_wire() if wire else self.catalog, shape)

    def rendered_page(
        self, kind: str, compacts: list[dict[str, Any]], shape: Shape, wire: bool = False
    ) -> list[dict[str, Any]]:
        """Full objects of a page of records; history events fetch their objects in one query."""
        if kind != "events":
            return [self.rendered(kind, c, shape, wire) for c in compacts]
        refs = [(e["kind"], e["data"]["ref"]) for e in compacts if "ref" in e["data"]]
        found = self.store.get_many(refs) if refs else {}
        return [self._render_event(e, wire, found) for e in compacts]

    def _render_event(
        self,
        evt: dict[str, Any],
        wire: bool = False,
        found: dict[str, tuple[dict[str, Any], bool]] | None = None,
    ) -> dict[str, Any]:
        # Events keep the shape of the version they were created with, whatever the request asks.
        data = dict(evt["data"])
        shape = shape_for(evt["api_version"])
        if "ref" in data:
            ref = data.pop("ref")
            hit = found.get(ref) if found is not None else self.store.get(evt["kind"], ref)
            data["object"] = hit[0] if hit else {}
            past = data.pop("past", None)
            if past is not None and hit:
                # A history event whose object differed then (Generator.recent): the object as
                # it was at the event, and for *.updated what changed, as Lifecycle.emit has it.
                data["object"] = {**hit[0], **past["at"]}
                if past["before"] is not None:
                    old = render(evt["kind"], {**hit[0], **past["before"]}, self.catalog, shape)
                    new = render(evt["kind"], data["object"], self.catalog, shape)
                    data["previous_attributes"] = {k: v for k, v in old.items() if new.get(k) != v}
        catalog = self.catalog.for_wire() if wire else self.catalog
        data["object"] = render(evt["kind"], data["object"], catalog, shape)
        out = {k: v for k, v in evt.items() if k != "kind"}
        out["data"] = data
        return out

    def retrieve(self, kind: str, obj_id: str, shape: Shape) -> dict[str, Any] | None:
        """What GET retrieve returns, or None when unknown."""
        found = self.store.get(kind, obj_id)
        if found is None:
            return None
        compact, deleted = found
        return deleted_stub(kind, obj_id) if deleted else self.rendered(kind, compact, shape)

    def discount_of(self, parent: dict[str, Any], discount_id: str, shape: Shape) -> Any:
        """A discount listed by a rendered subscription or invoice (its id when unknown)."""
        kind = {"subscription": "subscriptions", "invoice": "invoices"}.get(
            parent.get("object", "")
        )
        found = self.store.get(kind, parent["id"]) if kind else None
        compact = found[0] if found else {}
        d = compact.get("discount")
        if not d or d["id"] != discount_id:
            return discount_id
        sub = parent["id"] if kind == "subscriptions" else compact.get("subscription")
        return render_discount(d, self.catalog, shape, compact["customer"], sub)

    def nested_list(
        self, kind: str, obj_id: str, livemode: bool, shape: Shape
    ) -> list[dict[str, Any]] | None:
        """Every entry of an object's nested list (a subscription's items, an invoice's lines),
        of which the object itself embeds only the first few; None when the object is unknown."""
        found = self.store.get(kind, obj_id)
        if found is None or found[1] or bool(found[0]["livemode"]) != livemode:
            return None
        renderer = render_subscription_items if kind == "subscriptions" else render_invoice_lines
        return renderer(found[0], self.catalog, shape)

    def save(self, kind: str, compact: dict[str, Any], *, deleted: bool = False) -> None:
        """Stores the current state of an object."""
        status = {"events": compact.get("type"), "prices": compact.get("type")}.get(
            kind, compact.get("status")
        )
        self.store.put(kind, compact, status=status, deleted=deleted)

    def event(
        self, etype: str, kind: str, compact: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Records an event; its object renders in the account's default version, as Stripe's do."""
        data: dict[str, Any] = {"object": compact}
        if previous is not None:
            data["previous_attributes"] = previous
        evt = {
            "id": self.new_row_id("evt_"),
            "object": "event",
            "api_version": self.default_version,
            "created": self.clock.now(),
            "data": data,
            "kind": kind,
            "livemode": compact["livemode"],
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
            "type": etype,
        }
        if self.on_event is not None:
            evt["pending_webhooks"] = self.on_event(self.rendered("events", evt, self.shape))
        self.save("events", evt)
        return evt
