"""Simulated time: sign-ups, trials, upgrades, cancellations, failures, deletions and events."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

from orchestration.emulator.account import Account
from orchestration.emulator.catalog import INTERVAL_SECONDS, is_module
from orchestration.emulator.generator import Generator
from orchestration.emulator.store import loads

LIVE_SHARE = 0.15
# One trial in this many changes ends before its renewal is processed (see lapse_trial).
STEPS_PER_LAPSED_TRIAL = 10
ACTIVE_LIKE = ("active", "past_due")


class Lifecycle:
    """Applies random, seed-deterministic changes to an account, each with Stripe's events."""

    def __init__(self, account: Account, rng: random.Random) -> None:
        self.acc = account
        self.rng = rng
        self.new_events: list[str] = []
        # Lapsed trials draw from their own stream, so the changes a seed made before they existed
        # stay the same (tests replay those histories).
        self.lapse_rng = random.Random(f"lapsed-trials-{account.id}")  # noqa: S311 - reproducible
        self.steps_done = 0
        self.actions: list[tuple[Callable[[bool], bool], int]] = [
            (self.sign_up, 20),
            (self.trial_will_end, 6),
            (self.end_trial, 10),
            (self.upgrade, 12),
            (self.cancel, 10),
            (self.fail_payment, 8),
            (self.renew, 12),
            (self.refund, 5),
            (self.delete_customer, 4),
            (self.update_customer, 8),
            (self.change_catalog, 3),
        ]

    def run(self, steps: int) -> list[str]:
        """Applies `steps` changes; returns the new event ids, oldest first."""
        self.new_events = []
        funcs, weights = zip(*self.actions, strict=True)
        for _ in range(steps):
            livemode = self.rng.random() < LIVE_SHARE
            # An action may find nothing to act on (no trialing subscription left): try another.
            for action in self.rng.choices(funcs, weights, k=5):
                if action(livemode):
                    break
        lapses = (self.steps_done + steps) // STEPS_PER_LAPSED_TRIAL
        lapses -= self.steps_done // STEPS_PER_LAPSED_TRIAL
        self.steps_done += steps
        for _ in range(lapses):
            self.lapse_trial(self.lapse_rng.random() < LIVE_SHARE)
        return self.new_events

    # --- helpers ------------------------------------------------------------------------------

    def now(self) -> int:
        """The simulated clock."""
        return self.acc.clock.now()

    def emit(
        self, etype: str, kind: str, compact: dict[str, Any], before: dict[str, Any] | None = None
    ) -> None:
        """Writes one event with a snapshot of the object (and what changed, for *.updated)."""
        previous = None
        if before is not None:
            old = self.acc.rendered(kind, before, self.acc.shape)
            new = self.acc.rendered(kind, compact, self.acc.shape)
            previous = {k: v for k, v in old.items() if new.get(k) != v}
        evt = self.acc.event(etype, kind, copy.deepcopy(compact), previous)
        self.new_events.append(evt["id"])

    def pick(self, kind: str, livemode: bool, status: str | None) -> dict[str, Any] | None:
        """A random live object of a kind (and status)."""
        return self.acc.store.pick(kind, livemode, status, self.rng.random())

    def generator(self, livemode: bool) -> Generator:
        """A generator positioned at now, for objects built like the history's."""
        gen = Generator(self.acc, livemode)
        gen.load_catalog()
        return gen

    def store_generated(self, gen: Generator) -> None:
        """Saves what a generator built, and writes its events as snapshots."""
        self.acc.store.upsert_rows(gen.rows)
        objects = {row[2]: loads(row[8]) for row in gen.rows}
        # Written now, each event holds the object as it is now (its past fields are for the
        # history that generation writes: Generator.recent).
        for _, etype, kind, obj_id, _past in sorted(gen.events, key=lambda e: e[0]):
            self.emit(etype, kind, objects[obj_id])
        gen.rows, gen.events = [], []

    def bill(self, sub: dict[str, Any], ok: bool) -> None:
        """Invoices the subscription's current period now, paid or failed, with its events."""
        gen = self.generator(sub["livemode"])
        found = self.acc.store.get("customers", sub["customer"])
        if found is None:
            return
        cust = found[0]
        gen.invoice(sub, cust, self.now(), sub["period"], "paid" if ok else "open")
        self.store_generated(gen)

    # --- actions ------------------------------------------------------------------------------

    def sign_up(self, livemode: bool) -> bool:
        """A new customer, usually with a trial or a paid subscription."""
        gen = self.generator(livemode)
        gen.status_weights = [60, 35, 0, 0, 0, 5, 0, 0]
        gen.deletion_rate = 0.0
        gen.customer(self.rng.randrange(100_000, 999_999), self.now())
        self.store_generated(gen)
        return True

    def trial_will_end(self, livemode: bool) -> bool:
        """Stripe's three-days-before notice for a trial."""
        sub = self.pick("subscriptions", livemode, "trialing")
        if sub is None:
            return False
        self.emit("customer.subscription.trial_will_end", "subscriptions", sub)
        return True

    def end_trial(self, livemode: bool) -> bool:
        """A trial converts: the subscription becomes active and its first invoice is paid."""
        sub = self.pick("subscriptions", livemode, "trialing")
        if sub is None:
            return False
        before = copy.deepcopy(sub)
        now = self.now()
        sub.update(
            status="active",
            trial_end=now,
            billing_cycle_anchor=now,
            period=[now, now + self.period_length(sub)],
        )
        self.bill(sub, ok=True)
        self.save_sub(sub, before)
        return True

    def lapse_trial(self, livemode: bool) -> bool:
        """A trial ends before its renewal is processed: the subscription stays trialing.

        Stripe moves a subscription out of trialing when the first invoice is finalized, about
        an hour after trial_end (https://docs.stripe.com/billing/subscriptions/trials); until
        then it is trialing with a trial_end in the past: an expired trial.
        """
        sub = self.acc.store.pick("subscriptions", livemode, "trialing", self.lapse_rng.random())
        now = self.now()
        if sub is None or not sub.get("trial_end") or sub["trial_end"] <= now:
            return False
        ended = now - self.lapse_rng.randrange(60, 3600)
        if (sub.get("trial_start") or sub["period"][0]) >= ended:
            return False  # a trial that started moments ago cannot have ended
        before = copy.deepcopy(sub)
        sub.update(trial_end=ended, period=[sub["period"][0], ended])
        self.save_sub(sub, before)
        return True

    def upgrade(self, livemode: bool) -> bool:
        """More seats, or a move to a pricier price of the same interval and currency."""
        sub = self.pick("subscriptions", livemode, "active")
        if sub is None:
            return False
        before = copy.deepcopy(sub)
        item = sub["items"][0]
        current = self.acc.catalog.prices[item[1]]
        better = [
            p
            for p in self.acc.catalog.prices.values()
            if p["livemode"] == livemode
            and p["active"]
            and p["recurring"]
            and p["currency"] == current["currency"]
            and p["recurring"]["interval"] == current["recurring"]["interval"]
            and p["recurring"]["usage_type"] == "licensed"
            and not is_module(p)
            and (p["unit_amount"] or 0) > (current["unit_amount"] or 0)
        ]
        if better and self.rng.random() < 0.5:
            item[1] = self.rng.choice(better)["id"]
        elif item[2] is not None:
            item[2] += self.rng.randrange(1, 6)
        else:
            return False
        self.save_sub(sub, before)
        return True

    def cancel(self, livemode: bool) -> bool:
        """Immediate cancellation, or cancellation at the end of the period."""
        sub = self.pick("subscriptions", livemode, self.rng.choice(ACTIVE_LIKE))
        if sub is None:
            return False
        before = copy.deepcopy(sub)
        now = self.now()
        if self.rng.random() < 0.3 and not sub["cancel_at_period_end"]:
            sub.update(cancel_at_period_end=True, cancel_at=sub["period"][1], canceled_at=now)
            self.save_sub(sub, before)
            return True
        sub.update(status="canceled", canceled_at=now, ended_at=now)
        self.acc.save("subscriptions", sub)
        self.emit("customer.subscription.deleted", "subscriptions", sub)
        return True

    def fail_payment(self, livemode: bool) -> bool:
        """A renewal whose card is declined: the subscription goes past due."""
        sub = self.pick("subscriptions", livemode, "active")
        if sub is None:
            return False
        before = copy.deepcopy(sub)
        self.advance_period(sub)
        self.bill(sub, ok=False)
        sub["status"] = "past_due"
        self.save_sub(sub, before)
        self.set_delinquent(sub["customer"], True)
        return True

    def renew(self, livemode: bool) -> bool:
        """A successful renewal (a past-due subscription recovers too)."""
        sub = self.pick("subscriptions", livemode, self.rng.choice(ACTIVE_LIKE))
        if sub is None:
            return False
        before = copy.deepcopy(sub)
        self.advance_period(sub)
        self.bill(sub, ok=True)
        recovered = sub["status"] == "past_due"
        sub["status"] = "active"
        self.save_sub(sub, before)
        if recovered:
            self.set_delinquent(sub["customer"], False)
        return True

    def refund(self, livemode: bool) -> bool:
        """A full refund of a succeeded charge."""
        charge = self.pick("charges", livemode, "succeeded")
        if charge is None or charge["refunded"]:
            return False
        before = dict(charge)
        charge.update(refunded=True, amount_refunded=charge["amount"])
        self.acc.save("charges", charge)
        self.emit("charge.refunded", "charges", charge, before)
        return True

    def delete_customer(self, livemode: bool) -> bool:
        """Deleting a customer cancels its subscriptions first, as Stripe does."""
        cust = self.pick("customers", livemode, None)
        if cust is None:
            return False
        now = self.now()
        for sub in self.acc.store.by_customer("subscriptions", cust["id"]):
            if sub["status"] not in ("canceled", "incomplete_expired"):
                sub.update(status="canceled", canceled_at=now, ended_at=now)
                self.acc.save("subscriptions", sub)
                self.emit("customer.subscription.deleted", "subscriptions", sub)
        self.acc.save("customers", cust, deleted=True)
        self.emit("customer.deleted", "customers", cust)
        return True

    def update_customer(self, livemode: bool) -> bool:
        """A changed email, phone or address."""
        cust = self.pick("customers", livemode, None)
        if cust is None:
            return False
        before = copy.deepcopy(cust)
        field = self.rng.choice(["email", "phone", "address"])
        if field == "email":
            cust["email"] = f"new.{self.rng.randrange(10**6)}@example.org"
        elif field == "phone":
            cust["phone"] = f"+1555{self.rng.randrange(1000000, 9999999)}"
        else:
            cust["address"] = {
                "city": "Lisbon",
                "country": "PT",
                "line1": "Rua Augusta 1",
                "line2": None,
                "postal_code": "1100-048",
                "state": None,
            }
        self.acc.save("customers", cust)
        self.emit("customer.updated", "customers", cust, before)
        return True

    def change_catalog(self, livemode: bool) -> bool:
        """A new price for a product, or a renamed product."""
        product = self.pick("products", livemode, None)
        if product is None:
            return False
        if self.rng.random() < 0.5:
            before = dict(product)
            product.update(name=product["name"] + " (2026)", updated=self.now())
            self.acc.save("products", product)
            self.emit("product.updated", "products", product, before)
            return True
        base = next(
            p
            for p in self.acc.catalog.prices.values()
            if p["product"] == product["id"] or p["livemode"] == livemode
        )
        price = {
            **copy.deepcopy(base),
            "id": self.acc.new_row_id("price_"),
            "created": self.now(),
            "product": product["id"],
            "lookup_key": None,
            "unit_amount": (base["unit_amount"] or 0) + 100,
            "nickname": "New price",
        }
        price["unit_amount_decimal"] = str(price["unit_amount"])
        self.acc.catalog.add_price(price)
        self.acc.save("prices", price)
        self.emit("price.created", "prices", price)
        return True

    # --- small pieces -------------------------------------------------------------------------

    def period_length(self, sub: dict[str, Any]) -> int:
        """Seconds in one billing period of the subscription's first price."""
        rec = self.acc.catalog.prices[sub["items"][0][1]]["recurring"]
        return INTERVAL_SECONDS[rec["interval"]] * rec["interval_count"]

    def advance_period(self, sub: dict[str, Any]) -> None:
        """Starts the next billing period now."""
        now = self.now()
        sub["period"] = [now, now + self.period_length(sub)]

    def save_sub(self, sub: dict[str, Any], before: dict[str, Any]) -> None:
        """Saves a changed subscription and writes customer.subscription.updated."""
        self.acc.save("subscriptions", sub)
        self.emit("customer.subscription.updated", "subscriptions", sub, before)

    def set_delinquent(self, customer_id: str, value: bool) -> None:
        """Flags the customer as delinquent (or not), with customer.updated."""
        found = self.acc.store.get("customers", customer_id)
        if found is None or found[1] or found[0]["delinquent"] == value:
            return
        cust = found[0]
        before = dict(cust)
        cust["delinquent"] = value
        self.acc.save("customers", cust)
        self.emit("customer.updated", "customers", cust, before)
