"""Deterministic demo data with the distributions of a real SaaS account."""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import random
import shutil
import tempfile
from typing import Any

from orchestration.emulator.account import Account
from orchestration.emulator.catalog import (
    COUPONS,
    DAY,
    INTERVAL_SECONDS,
    MODULE_PRICES,
    MODULE_PRODUCTS,
    PRICES,
    PRODUCTS,
    coupon_object,
    is_module,
    price_object,
    product_object,
)
from orchestration.emulator.store import Store, all_stores_quiet, decode_key, dumps, loads

YEAR = 365 * DAY
HISTORY = 4 * YEAR
EVENT_HORIZON = 33 * DAY  # a little more than the 30 days Stripe lists, to test the cut-off

FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Maria",
    "Yuki",
    "Omar",
    "Lena",
    "Ravi",
    "Zoe",
    "Hiro",
    "Fatima",
    "Noah",
    "Ines",
    "Kwame",
    "Sofia",
    "Liam",
    "Mei",
    "Pablo",
    "Anna",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Curie",
    "Tanaka",
    "Haddad",
    "Novak",
    "Patel",
    "Okafor",
    "Sato",
    "Rossi",
    "Kim",
    "Silva",
    "Nguyen",
    "Schmidt",
    "Ali",
    "Berg",
]
# (country, city, state, postal code, currency)
PLACES = [
    ("US", "San Francisco", "CA", "94107", "usd"),
    ("US", "New York", "NY", "10001", "usd"),
    ("US", "Austin", "TX", "73301", "usd"),
    ("CA", "Toronto", "ON", "M5V 2T6", "usd"),
    ("GB", "London", None, "EC1A 1BB", "usd"),
    ("DE", "Berlin", None, "10115", "eur"),
    ("FR", "Paris", None, "75001", "eur"),
    ("JP", "Tokyo", None, "100-0001", "jpy"),
    ("KW", "Kuwait City", None, "13001", "kwd"),
    ("US", "Chicago", "IL", "60601", "usd"),
]
STATUSES = [
    "active",
    "trialing",
    "past_due",
    "unpaid",
    "canceled",
    "incomplete",
    "incomplete_expired",
    "paused",
]
STATUS_WEIGHTS = [50, 9, 6, 3, 20, 3, 3, 6]
BILLED = {"active", "past_due", "unpaid", "canceled", "paused"}
TRIAL = 14 * DAY
CHUNK = 10_000
# Of a chunk's active and past-due USD monthly subscriptions, the first and then one in WIDE_EVERY
# also stack add-on modules: 12 to 32 items, more than the 10 a subscription embeds.
WIDE_EVERY = 400


class Generator:
    """Builds one mode's dataset as compact rows, then bulk-loads them."""

    def __init__(self, account: Account, livemode: bool) -> None:
        self.acc = account
        self.rng = account.rng
        self.live = livemode
        self.now = account.clock.now()
        self.rows: list[tuple] = []
        # (time, type, kind, object id, the object's past fields or None): see `recent`.
        self.events: list[tuple[int, str, str, str, dict[str, Any] | None]] = []
        self.price_ids: dict[str, str] = {}
        self.usd_prices: list[str] = []
        self.usd_weights: list[int] = []
        self.status_weights = STATUS_WEIGHTS
        # Statuses handed out first, so that even a 20-customer dataset has every one of them.
        self.forced_statuses: list[str] = []
        self.deletion_rate = 0.06
        self.wide_every: int | None = None  # None: no module stacks (sign-ups during ticks)
        self.wide_candidates = 0

    def row(
        self, kind: str, obj: dict[str, Any], status: str | None = None, deleted: bool = False
    ) -> None:
        """Queues one object for the bulk insert."""
        obj_id = obj["id"]
        n = decode_key(obj_id) if kind != "coupons" else self.acc.store.name(kind, obj_id)
        self.rows.append(
            (
                n,
                kind,
                obj["id"],
                int(self.live),
                obj["created"],
                obj.get("customer"),
                status,
                int(deleted),
                dumps(obj),
            )
        )

    def recent(
        self,
        when: int,
        etype: str,
        kind: str,
        obj: dict[str, Any],
        at: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
    ) -> None:
        """Queues an event for an object that changed within the event horizon. `at`: the fields
        that differed at the event's time from the object's final state (its data.object is the
        final state with them); `before`: for *.updated, the fields as they were just before
        (its previous_attributes are what they change, as Stripe's)."""
        if when >= self.now - EVENT_HORIZON:
            # An event at the generation's "now" (or clamped to it) shows the object as it is:
            # a list read in that same second would otherwise meet two states of one moment.
            past = None if at is None or when >= self.now else {"at": at, "before": before}
            self.events.append((min(when, self.now), etype, kind, obj["id"], past))

    def load_catalog(self) -> None:
        """Reads the catalog the account already has (for sign-ups after generation)."""
        for price in self.acc.catalog.prices.values():
            if price["livemode"] != self.live or price["lookup_key"] is None:
                continue
            spec = next((p for p in PRICES if p[0] == price["lookup_key"]), None)
            self.price_ids.setdefault(price["lookup_key"], price["id"])
            if spec and spec[2] == "usd" and spec[8] and price["active"]:
                self.usd_prices.append(price["id"])
                self.usd_weights.append(spec[8])

    def catalog(self) -> None:
        """Products, prices and coupons, created at the start of the history."""
        start = self.now - HISTORY - 30 * DAY
        product_ids = {}
        for i, (key, _, _) in enumerate(PRODUCTS):
            pid = self.acc.new_row_id("prod_", 14)
            product_ids[key] = pid
            self.row(
                "products", product_object(pid, key, start + i, self.live), deleted=key == "legacy"
            )
        for i, spec in enumerate(PRICES):
            price = price_object(
                self.acc.new_row_id("price_"),
                spec,
                product_ids[spec[1]],
                start + 100 + i // 3,
                self.live,
            )
            self.acc.catalog.add_price(price)
            self.price_ids[spec[0]] = price["id"]
            self.row("prices", price, price["type"])
            if spec[2] == "usd" and spec[8]:
                self.usd_prices.append(price["id"])
                self.usd_weights.append(spec[8])
        for i, coupon_spec in enumerate(COUPONS):
            coupon = coupon_object(
                coupon_spec, start + 200 + i, self.live, self.rng.randrange(5, 500)
            )
            if self.live:
                coupon["id"] = coupon["id"] + "_LIVE"
            self.acc.catalog.coupons[coupon["id"]] = coupon
            self.row("coupons", coupon)

    def module_catalog(self) -> None:
        """The add-on modules' product and prices. Made after both modes' catalog, so adding them
        left every id generated before them as it was."""
        start = self.now - HISTORY - 30 * DAY
        product_ids = {}
        for i, (key, _, _) in enumerate(MODULE_PRODUCTS):
            product_ids[key] = self.acc.new_row_id("prod_", 14)
            self.row("products", product_object(product_ids[key], key, start + 50 + i, self.live))
        for i, spec in enumerate(MODULE_PRICES):
            price = price_object(
                self.acc.new_row_id("price_"),
                spec,
                product_ids[spec[1]],
                start + 300 + i,
                self.live,
            )
            self.acc.catalog.add_price(price)
            self.price_ids[spec[0]] = price["id"]
            self.row("prices", price, price["type"])

    def customers(self, count: int, first: int = 0) -> None:
        """count customers with their subscriptions, invoices, charges and sessions."""
        rand = self.rng.random
        prev = self.now - HISTORY
        for n in range(first, first + count):
            created = prev if rand() < 0.15 else self.now - int(HISTORY * rand() ** 1.5) - 60
            prev = created
            self.customer(n, created)

    def customer(self, n: int, created: int) -> None:
        """One customer and everything it owns."""
        rng = self.rng
        rand = rng.random
        cid = self.acc.new_row_id("cus_", 14)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        place = rng.choice(PLACES)
        address = None
        if rand() < 0.88:
            address = {
                "city": place[1],
                "country": place[0],
                "line1": f"{rng.randrange(1, 999)} Market Street",
                "line2": f"Suite {rng.randrange(1, 90)}" if rand() < 0.3 else None,
                "postal_code": place[3],
                "state": place[2],
            }
        deleted = rand() < self.deletion_rate
        deleted_at = created + int((self.now - created) * rand()) if deleted else None
        cust = {
            "id": cid,
            "object": "customer",
            "address": address,
            "created": created,
            "currency": None,
            "delinquent": False,
            "description": f"Customer {n}" if rand() < 0.2 else None,
            "email": f"{first}.{last}{n}@example.com".lower(),
            "invoice_prefix": cid[4:12].upper(),
            "livemode": self.live,
            "name": f"{first} {last}",
            "phone": f"+1555{rng.randrange(1000000, 9999999)}" if rand() < 0.5 else None,
        }
        r = rand()
        n_subs = 0 if r < 0.15 else 1 if r < 0.85 else 2 if r < 0.97 else 3
        if n_subs and rand() < 0.04:
            # A coupon applied to the customer: it discounts every subscription that has no
            # discount of its own.
            cust["discount"] = self.new_discount(place[4], created)
        for _ in range(n_subs):
            self.subscription(cust, place[4], deleted_at)
        if rand() < 0.08:
            self.one_time_charge(cust)
        if rand() < 0.06:
            self.abandoned_session(cust)
        self.row("customers", cust, deleted=deleted)
        self.recent(created, "customer.created", "customers", cust)
        if deleted_at is not None:
            self.recent(deleted_at, "customer.deleted", "customers", cust)

    def pick_price(self, currency: str) -> str:
        """A price the customer's country would buy."""
        key = {"jpy": "jp_month", "kwd": "kw_month", "eur": "pro_eur_month"}.get(currency)
        if key and self.rng.random() < 0.8:
            return self.price_ids[key]
        return self.rng.choices(self.usd_prices, self.usd_weights)[0]

    def sub_times(self, status: str, c: int) -> tuple[int, int | None]:
        """(start, trial_end) for a new subscription of a customer created at c."""
        rand = self.rng.random
        if status == "incomplete":
            return max(c, self.now - int(20 * 3600 * rand()) - 60), None
        if status == "trialing":
            return max(c, self.now - int(13 * DAY * rand()) - 60), None
        start = c + int((self.now - c) * rand() ** 2)
        if status == "paused" or (status in BILLED and rand() < 0.3):
            start = min(start, self.now - TRIAL - 3600)
            if start >= c:
                return start, start + TRIAL
        return start, None

    def subscription(self, cust: dict[str, Any], currency: str, deleted_at: int | None) -> None:
        """A subscription in a random status with its billing history."""
        rng, rand = self.rng, self.rng.random
        if deleted_at:
            status = "canceled"
        elif self.forced_statuses:
            status = self.forced_statuses.pop()
        else:
            status = rng.choices(STATUSES, self.status_weights)[0]
        start, trial_end = self.sub_times(status, cust["created"])
        if status == "paused" and trial_end is None:
            status = "active"
        if status == "trialing":
            trial_end = start + TRIAL
        sid = self.acc.new_row_id("sub_")
        price_id = self.pick_price(currency)
        price = self.acc.catalog.prices[price_id]
        cust["currency"] = price["currency"]
        quantity = 1 if rand() < 0.75 else rng.randrange(2, 26)
        items = [[self.acc.new_id("si_", 14), price_id, quantity, start]]
        rec = price["recurring"]
        if (
            price["currency"] == "usd"
            and rec["interval"] == "month"
            and rec["interval_count"] == 1
            and rand() < 0.2
        ):
            extra = "api_metered" if rand() < 0.5 else "seat_addon"
            items.append(
                [
                    self.acc.new_id("si_", 14),
                    self.price_ids[extra],
                    None if extra == "api_metered" else rng.randrange(1, 6),
                    start,
                ]
            )
        if (
            self.wide_every
            and status in ("active", "past_due")
            and price["currency"] == "usd"
            and (rec["interval"], rec["interval_count"]) == ("month", 1)
        ):
            if self.wide_candidates % self.wide_every == 0:
                items += self.modules(sid, start, self.wide_candidates // self.wide_every)
            self.wide_candidates += 1
        length = INTERVAL_SECONDS[rec["interval"]] * rec["interval_count"]
        anchor = trial_end or start
        ended = None
        if status == "canceled":
            ended = deleted_at or start + int((self.now - start) * rand())
        elif status == "incomplete_expired":
            ended = min(start + 23 * 3600, self.now)
        at = ended or self.now
        if status == "trialing" or at < anchor:
            period = [start, trial_end or start + length]
        else:
            k = (at - anchor) // length
            period = [anchor + k * length, anchor + (k + 1) * length]
        cancel_at_period_end = status == "active" and rand() < 0.08
        discount = self.new_discount(price["currency"], start) if rand() < 0.15 else None
        sub = {
            "id": sid,
            "object": "subscription",
            "billing_cycle_anchor": anchor,
            "cancel_at": period[1] if cancel_at_period_end else None,
            "cancel_at_period_end": cancel_at_period_end,
            "canceled_at": ended
            if status == "canceled"
            else (period[0] + 60 if cancel_at_period_end else None),
            "created": start,
            "currency": price["currency"],
            "customer": cust["id"],
            "discount": discount,
            "ended_at": ended,
            "items": items,
            "latest_invoice": None,
            "livemode": self.live,
            "period": period,
            "start_date": start,
            "status": status,
            "trial_end": trial_end,
            "trial_start": start if trial_end else None,
        }
        if status == "paused":
            sub["pause_collection"] = None
        self.invoices(sub, cust, anchor, length)
        if rand() < 0.4:
            self.subscription_session(sub, cust)
        if status in ("past_due", "unpaid"):
            cust["delinquent"] = True
        self.row("subscriptions", sub, status)
        # Stripe's events hold the object as it was then: created in its first status (and not
        # yet canceled), a trial's notice three days before it ends, and the trial's end when the
        # subscription moved on (active, or paused without a payment method), with what changed.
        first = "trialing" if trial_end else "incomplete" if status.startswith("inc") else "active"
        created = {
            "status": first,
            "period": [start, trial_end or start + length],
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "ended_at": None,
        }
        self.recent(start, "customer.subscription.created", "subscriptions", sub, created)
        notice = (trial_end or 0) - 3 * DAY
        if trial_end and notice <= self.now and (not ended or ended > notice):
            etype = "customer.subscription.trial_will_end"
            self.recent(notice, etype, "subscriptions", sub, created)
        if trial_end and status != "trialing" and trial_end <= (ended or self.now):
            converted = {
                **created,
                "status": "paused" if status == "paused" else "active",
                "period": [trial_end, trial_end + length],
            }
            self.recent(
                trial_end, "customer.subscription.updated", "subscriptions", sub, converted, created
            )
        if ended and status == "canceled":
            self.recent(ended, "customer.subscription.deleted", "subscriptions", sub)

    def new_discount(self, currency: str, start: int) -> dict[str, Any]:
        """A discount from a coupon that fits the currency (amount-off coupons have one); a
        currency with coupons of its own uses them half the time (a yen coupon for yen prices)."""
        fitting = [
            c
            for c in self.acc.catalog.coupons.values()
            if c["livemode"] == self.live and c["currency"] in (None, currency)
        ]
        own = [c for c in fitting if c["currency"] == currency and currency != "usd"]
        coupon = self.rng.choice(own if own and self.rng.random() < 0.5 else fitting)
        months = coupon["duration_in_months"]
        return {
            "id": self.acc.new_id("di_", 14),
            "coupon": coupon["id"],
            "start": start,
            "end": start + months * INTERVAL_SECONDS["month"] if months else None,
        }

    def modules(self, sub_id: str, start: int, k: int) -> list[list]:
        """Items of add-on modules for the k-th wide subscription of a chunk (24 for the first).
        Their ids derive from the subscription's and they draw nothing from the random streams,
        so every other generated object stayed as it was when they were added."""
        count = 24 if k == 0 else 11 + (7 * k) % 20
        return [
            [_derived_id("si_", sub_id, spec[0]), self.price_ids[spec[0]], 1 + j % 3, start]
            for j, spec in enumerate(MODULE_PRICES[:count])
        ]

    def invoices(self, sub: dict[str, Any], cust: dict[str, Any], anchor: int, length: int) -> None:
        """The subscription's most recent invoices and their charges."""
        status = sub["status"]
        if sub["trial_start"]:
            self.invoice(
                sub,
                cust,
                sub["trial_start"],
                [sub["trial_start"], sub["trial_end"]],
                "paid",
                zero=True,
            )
        if status in ("trialing", "paused"):
            return
        if status in ("incomplete", "incomplete_expired"):
            state = "open" if status == "incomplete" else "void"
            self.invoice(sub, cust, sub["start_date"], sub["period"], state)
            return
        last = sub["period"][0]
        count = 1 if self.rng.random() < 0.75 else 2
        starts = [s for s in (last - i * length for i in range(count)) if s >= anchor]
        for i, start in enumerate(reversed(starts)):
            final = i == len(starts) - 1
            state = "open" if final and status in ("past_due", "unpaid") else "paid"
            self.invoice(sub, cust, start, [start, start + length], state)

    def invoice(
        self,
        sub: dict[str, Any],
        cust: dict[str, Any],
        created: int,
        period: list[int],
        state: str,
        zero: bool = False,
    ) -> None:
        """One subscription invoice, with a succeeded or failed charge when it has an amount."""
        rng = self.rng
        iid = self.acc.new_row_id("in_")
        lines, subtotal = [], 0
        for si, price_id, quantity, _ in sub["items"]:
            price = self.acc.catalog.prices[price_id]
            qty = quantity if quantity is not None else rng.randrange(0, 5000)
            amount = 0 if zero else price["unit_amount"] * qty
            subtotal += amount
            # A module's line id derives from the invoice's, like its item's (see modules()).
            il = _derived_id("il_", iid, si) if is_module(price) else self.acc.new_id("il_", 14)
            lines.append([il, price_id, qty, amount, period[0], period[1], si])
        discount = sub["discount"] or cust.get("discount")
        total = subtotal - self.discount_amount(discount, sub, created, subtotal)
        paid = state == "paid"
        charge_id = None
        # Stripe finalizes and charges about an hour after creating a renewal invoice.
        later = min(created + 3600, self.now)
        if (total > 0 and state != "void") or state == "open":
            charge_id = self.charge(
                cust,
                min(created + rng.randrange(0, 3600), self.now),
                total,
                sub["currency"],
                iid,
                paid,
                "Subscription update",
            )
        billing_reason = (
            "subscription_create" if created == sub["start_date"] else "subscription_cycle"
        )
        inv = {
            "id": iid,
            "object": "invoice",
            "amount_paid": total if paid else 0,
            "amount_shipping": 0,
            "attempt_count": 0 if zero else rng.randrange(1, 4),
            "billing_reason": billing_reason,
            "charge": charge_id,
            "created": created,
            "currency": sub["currency"],
            "customer": cust["id"],
            "customer_email": cust["email"],
            "customer_name": cust["name"],
            "finalized_at": later if not zero else created,
            "lines": lines,
            "livemode": self.live,
            "number": f"{cust['invoice_prefix']}-{rng.randrange(1, 9999):04d}",
            "paid_at": later if paid else None,
            "payment_intent": None,
            "period_end": period[1],
            "period_start": period[0],
            "status": state,
            "subscription": sub["id"],
            "subtotal": subtotal,
            "total": total,
            "voided_at": min(created + 23 * 3600, self.now) if state == "void" else None,
        }
        if total < subtotal:
            inv["discount"] = discount
        sub["latest_invoice"] = iid
        self.row("invoices", inv, state)
        self.recent(created, "invoice.created", "invoices", inv)
        if paid:
            self.recent(later, "invoice.paid", "invoices", inv)
        elif state == "open":
            self.recent(later, "invoice.payment_failed", "invoices", inv)

    def discount_amount(
        self, d: dict[str, Any] | None, sub: dict[str, Any], at: int, subtotal: int
    ) -> int:
        """What a discount of the subscription (or its customer) takes off an invoice created at
        `at`."""
        if d is None or (d["end"] is not None and at >= d["end"]):
            return 0
        coupon = self.acc.catalog.coupons[d["coupon"]]
        if coupon["duration"] == "once" and at != sub["start_date"]:
            return 0
        if coupon["percent_off"]:
            return round(subtotal * coupon["percent_off"] / 100)
        return min(subtotal, coupon["amount_off"])

    def charge(
        self,
        cust: dict[str, Any],
        created: int,
        amount: int,
        currency: str,
        invoice: str | None,
        ok: bool,
        description: str,
    ) -> str:
        """A card charge; some succeeded ones were refunded later."""
        rng = self.rng
        chid = self.acc.new_row_id("ch_")
        refunded = ok and rng.random() < 0.04
        ch = {
            "id": chid,
            "object": "charge",
            "amount": amount,
            "amount_refunded": amount if refunded else 0,
            "brand": rng.choice(["visa", "mastercard", "amex"]),
            "created": created,
            "currency": currency,
            "customer": cust["id"],
            "description": description,
            "failure_code": None if ok else "card_declined",
            "failure_message": None if ok else "Your card was declined.",
            "invoice": invoice,
            "last4": rng.choice(["4242", "5555", "0005", "1881"]),
            "livemode": self.live,
            "name": cust["name"],
            "payment_intent": f"pi_{chid[3:]}",
            "receipt_email": cust["email"],
            "refunded": refunded,
            "status": "succeeded" if ok else "failed",
        }
        self.row("charges", ch, ch["status"])
        self.recent(created, "charge.succeeded" if ok else "charge.failed", "charges", ch)
        if refunded:
            self.recent(min(created + DAY, self.now), "charge.refunded", "charges", ch)
        return chid

    def one_time_charge(self, cust: dict[str, Any]) -> None:
        """A one-off setup-fee payment outside any subscription."""
        created = cust["created"] + int((self.now - cust["created"]) * self.rng.random())
        ok = self.rng.random() < 0.85
        price = self.acc.catalog.prices[self.price_ids["setup_fee"]]
        self.charge(cust, created, price["unit_amount"], "usd", None, ok, "Onboarding setup fee")

    def subscription_session(self, sub: dict[str, Any], cust: dict[str, Any]) -> None:
        """The completed checkout session that created a subscription."""
        price = self.acc.catalog.prices[sub["items"][0][1]]
        amount = 0 if sub["trial_end"] else price["unit_amount"] * (sub["items"][0][2] or 1)
        created = max(cust["created"], sub["created"] - self.rng.randrange(0, 300))
        self.session(
            cust,
            created,
            "complete",
            "no_payment_required" if amount == 0 else "paid",
            sub["id"],
            amount,
            sub["currency"],
        )

    def abandoned_session(self, cust: dict[str, Any]) -> None:
        """An expired, or still open, checkout session without a subscription."""
        if self.rng.random() < 0.2:
            created = self.now - self.rng.randrange(60, 20 * 3600)
            status = "open"
        else:
            created = cust["created"] + int(
                max(0, self.now - cust["created"] - DAY) * self.rng.random()
            )
            status = "expired"
        price = self.acc.catalog.prices[self.price_ids["pro_month"]]
        self.session(
            cust, max(created, cust["created"]), status, "unpaid", None, price["unit_amount"], "usd"
        )

    def session(
        self,
        cust: dict[str, Any],
        created: int,
        status: str,
        payment_status: str,
        sub_id: str | None,
        amount: int,
        currency: str,
    ) -> None:
        """One checkout session row."""
        cs = {
            "id": self.acc.new_row_id("cs_" + ("live_" if self.live else "test_"), 40),
            "object": "checkout.session",
            "amount_total": amount,
            "created": created,
            "currency": currency,
            "customer": cust["id"],
            "customer_email": cust["email"],
            "expires_at": created + DAY,
            "invoice": None,
            "livemode": self.live,
            "mode": "subscription" if sub_id else "payment",
            "payment_intent": None,
            "payment_status": payment_status,
            "status": status,
            "subscription": sub_id,
        }
        self.row("checkout_sessions", cs, status)
        if status == "complete":
            self.recent(created, "checkout.session.completed", "checkout_sessions", cs)
        elif status == "expired":
            self.recent(created + DAY, "checkout.session.expired", "checkout_sessions", cs)

    def flush_rows(self) -> None:
        """Bulk-loads the rows queued so far (events wait for the end: they are sorted)."""
        self.acc.store.bulk_insert(self.rows)
        self.rows = []

    def flush(self) -> None:
        """Renders queued events and bulk-loads every row."""
        self.events.sort(key=lambda e: e[0])
        # History events point at their object instead of copying it: the object has not
        # changed since generation, and copying 300k objects would triple start-up time.
        # An event whose object differed then carries those fields (`recent`'s at and before),
        # applied to the object when the event renders (Account._render_event).
        template = (
            '{"id":"%s","object":"event","api_version":"'
            + self.acc.default_version
            + '","created":%d,"data":{"ref":"%s"%s},"kind":"%s","livemode":'
            + ("true" if self.live else "false")
            + ',"pending_webhooks":0,"request":{"id":null,"idempotency_key":null},"type":"%s"}'
        )
        live, new_id = int(self.live), self.acc.new_row_id
        for when, etype, kind, obj_id, past in self.events:
            evt_id = new_id("evt_")
            extra = "" if past is None else ',"past":' + dumps(past).decode()
            data = (template % (evt_id, when, obj_id, extra, kind, etype)).encode()
            self.rows.append(
                (decode_key(evt_id), "events", evt_id, live, when, None, etype, 0, data)
            )
        self.acc.store.bulk_insert(self.rows)
        self.rows, self.events = [], []


def _derived_id(prefix: str, parent: str, salt: str) -> str:
    """A Stripe-style id derived from its parent's id: unique, and drawn from no random stream."""
    return prefix + hashlib.sha256(f"{parent}:{salt}".encode()).hexdigest()[:14]


def generate(account: Account, customers: int, live_customers: int, seed: int = 0) -> None:
    """Fills an account with test- and live-mode data, in chunks that each have their own seed."""
    # Millions of short-lived containers make the cyclic GC rescan the heap over and over.
    was_enabled = gc.isenabled()
    gc.disable()
    rng = account.rng
    try:
        for livemode in (False, True):
            gen = Generator(account, livemode)
            gen.catalog()
            gen.flush_rows()
        for livemode in (False, True):
            gen = Generator(account, livemode)
            gen.module_catalog()
            gen.flush_rows()
        chunks = [
            (seed, livemode, index, first, min(CHUNK, count - first))
            for livemode, count in ((False, customers), (True, live_customers))
            for index, first in enumerate(range(0, count, CHUNK))
        ]
        if len(chunks) > 2 and _can_fork():
            _generate_in_workers(account, chunks)
        else:
            for chunk in chunks:
                _generate_chunk(account, chunk)
        account.rng = rng
        # Rows made later (ticks, endpoints) take numbers above every chunk's range.
        account.store.restart_keys(1 << 31)
        account.store.create_indexes()
    finally:
        if was_enabled:
            gc.enable()


# Bump when generated data changes, so files written by older code are generated again.
DATA_FORMAT = "2"


def load_or_generate(account: Account, customers: int, live_customers: int, seed: int) -> bool:
    """Fills the account, reusing a file store that already holds this dataset; True if reused.

    Generating 1M customers takes minutes; a file (db_path) generated once serves later runs in
    seconds. Reused data was generated against an earlier clock: the account has simply aged.
    """
    store = account.store
    if store.path == ":memory:":
        generate(account, customers, live_customers, seed)
        return False
    wanted = {
        "format": DATA_FORMAT,
        "customers": str(customers),
        "live_customers": str(live_customers),
        "seed": str(seed),
        "api_version": account.default_version,
        "complete": "yes",
    }
    if store.meta() == wanted:
        _load_catalog(account)
        store.restart_keys(max(1 << 31, store.max_key() + 1))
        store.reusable = True
        return True
    if store.meta() or store.max_key():
        store.clear()
    generate(account, customers, live_customers, seed)
    store.set_meta(wanted)
    store.reusable = True
    return False


def _load_catalog(account: Account) -> None:
    """Rebuilds the in-memory catalog (and coupon ids) from a reused store, in creation order."""
    with account.store.lock:
        rows = account.store.db.execute(
            "select n, kind, id, data from obj where kind in ('prices', 'coupons') order by n"
        ).fetchall()
    for n, kind, obj_id, data in rows:
        obj = loads(data)
        if kind == "prices":
            account.catalog.add_price(obj)
        else:
            account.catalog.coupons[obj_id] = obj
            account.store.named[(kind, obj_id)] = n


Chunk = tuple[int, bool, int, int, int]  # seed, livemode, index, first customer, count
_KEYS_PER_CHUNK = 1 << 20
_LIVE_CHUNKS = 1 << 10  # live chunks number from here, so key ranges never overlap
_WORKER_ACCOUNT: Account | None = None


def _generate_chunk(account: Account, chunk: Chunk) -> None:
    """Generates one chunk into account.store, deterministically from the chunk alone."""
    seed, livemode, index, first, count = chunk
    account.rng = random.Random(f"{seed}:{livemode}:{index}")  # noqa: S311 - reproducible
    account.reset_ids()
    number = index + (_LIVE_CHUNKS if livemode else 0) + 1
    account.store.restart_keys(number * _KEYS_PER_CHUNK)
    gen = Generator(account, livemode)
    gen.load_catalog()
    if index == 0:
        gen.forced_statuses = list(reversed(STATUSES))
    gen.wide_every = WIDE_EVERY
    gen.customers(count, first)
    gen.flush()


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) > 1


def _worker(args: tuple[Chunk, str]) -> str:
    """In a forked worker: generates a chunk into its own SQLite file and returns the path."""
    chunk, path = args
    account = _WORKER_ACCOUNT
    if account is None:
        raise RuntimeError("generator worker started without an account")
    account.store = Store(path)
    _generate_chunk(account, chunk)
    account.store.db.close()
    return path


def _generate_in_workers(account: Account, chunks: list[Chunk]) -> None:
    """Generates chunks in forked processes (one per core) and copies them into the store."""
    global _WORKER_ACCOUNT
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - RAM-backed, private dir
    folder = tempfile.mkdtemp(prefix="stripe-emulator-", dir=shm)
    _WORKER_ACCOUNT = account
    try:
        jobs = [(chunk, os.path.join(folder, f"chunk{i}.db")) for i, chunk in enumerate(chunks)]
        context = multiprocessing.get_context("fork")
        # A thread inside SQLite at fork time would leave its mutex locked in the workers.
        with all_stores_quiet():
            pool = context.Pool(min(os.cpu_count() or 2, 4))
        with pool:
            for path in pool.imap(_worker, jobs):
                account.store.copy_from(path)
                os.remove(path)
    finally:
        _WORKER_ACCOUNT = None
        shutil.rmtree(folder, ignore_errors=True)
