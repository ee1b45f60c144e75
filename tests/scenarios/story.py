"""Scenario customers changed through the emulator's own store and lifecycle (so every change
carries the event Stripe would send), and the sync and build that follow them."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from orchestration.emulator import Emulator
from orchestration.emulator.catalog import INTERVAL_SECONDS
from orchestration.emulator.lifecycle import Lifecycle
from orchestration.extract import sync_stripe
from orchestration.transform.runner import build

DAY = 86_400


def moment(emu: Emulator) -> datetime:
    """The emulator's clock as an aware datetime."""
    return datetime.fromtimestamp(emu.now(), tz=UTC)


def move_clock_to(emu: Emulator, when: datetime) -> None:
    """Moves the emulator's clock to `when` (an emulator started with now= never moves alone)."""
    emu.advance_clock(int(when.timestamp()) - emu.now())


def sync_and_build(
    emu: Emulator, database_url: str, target: Path, *, every_test: bool = False
) -> datetime:
    """The real pipeline at the emulator's clock: sync (SDK over HTTP), then dbt build.

    The build is the production one (selector `incremental`: every model, the reader_guard
    checks); `every_test` runs every unit and data test too, as a scenario's last build should,
    so dbt's own tests see the story's data at least once.
    """
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    as_of = moment(emu)
    build(
        database_url,
        as_of=as_of,
        livemode=False,
        target_path=target,
        selector=None if every_test else "incremental",
    )
    return as_of


def fetch_dicts(database_url: str, query: str) -> list[dict[str, object]]:
    """Rows of a query as dicts keyed by column name."""
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute(query)
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class Story:
    """Named test-mode customers on the Pro monthly price (29.00 USD a seat)."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.acc = emu.account
        self.life = Lifecycle(self.acc, random.Random(0))  # noqa: S311 - reproducible
        prices = self.acc.catalog.prices.values()
        self.price = next(p for p in prices if p["nickname"] == "Pro monthly" and not p["livemode"])
        coupons = self.acc.catalog.coupons.values()
        self.coupon = next(c for c in coupons if c["percent_off"] == 25 and not c["livemode"])
        self.customer_ids: dict[str, str] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}

    def subscribe(
        self,
        name: str,
        quantity: int,
        *,
        trial_seconds: int | None = None,
        coupon_seconds: int | None = None,
    ) -> None:
        """A new subscription (and, the first time, the customer `name`), now: trialing for
        `trial_seconds`, else active and billed; with a 25 % coupon ending after
        `coupon_seconds`."""
        now = self.emu.now()
        with self.emu.lock:
            if name not in self.customer_ids:
                template = self.acc.store.pick("customers", False, None, 0.0)
                assert template is not None
                customer = {
                    **copy.deepcopy(template),
                    "id": self.acc.new_row_id("cus_", 14),
                    "created": now,
                    "currency": "usd",
                    "delinquent": False,
                    "email": f"{name}@example.com",
                    "name": name.title(),
                }
                customer.pop("discount", None)
                self.customer_ids[name] = customer["id"]
                self.acc.save("customers", customer)
                self.life.emit("customer.created", "customers", customer)
            discount = None
            if coupon_seconds is not None:
                discount = {
                    "id": self.acc.new_id("di_", 14),
                    "coupon": self.coupon["id"],
                    "start": now,
                    "end": now + coupon_seconds,
                }
            trial_end = now + trial_seconds if trial_seconds is not None else None
            sub = {
                "id": self.acc.new_row_id("sub_"),
                "object": "subscription",
                "billing_cycle_anchor": trial_end or now,
                "cancel_at": None,
                "cancel_at_period_end": False,
                "canceled_at": None,
                "created": now,
                "currency": "usd",
                "customer": self.customer_ids[name],
                "discount": discount,
                "ended_at": None,
                "items": [[self.acc.new_id("si_", 14), self.price["id"], quantity, now]],
                "latest_invoice": None,
                "livemode": False,
                "period": [now, trial_end or now + INTERVAL_SECONDS["month"]],
                "start_date": now,
                "status": "trialing" if trial_end else "active",
                "trial_end": trial_end,
                "trial_start": now if trial_end else None,
            }
            self.subscriptions[name] = sub
            self.acc.save("subscriptions", sub)
            self.life.emit("customer.subscription.created", "subscriptions", sub)
            if trial_end is None:
                self.life.bill(sub, ok=True)

    def convert(self, name: str) -> None:
        """The trial converts now: active, first period billed (customer.subscription.updated
        with the previous status)."""
        now = self.emu.now()
        with self.emu.lock:
            sub = self.subscriptions[name]
            before = copy.deepcopy(sub)
            sub.update(
                status="active",
                billing_cycle_anchor=now,
                period=[now, now + INTERVAL_SECONDS["month"]],
            )
            self.life.bill(sub, ok=True)
            self.life.save_sub(sub, before)

    def change_seats(self, name: str, quantity: int) -> None:
        """An upgrade or a downgrade: customer.subscription.updated, the status unchanged."""
        with self.emu.lock:
            sub = self.subscriptions[name]
            before = copy.deepcopy(sub)
            sub["items"][0][2] = quantity
            self.life.save_sub(sub, before)

    def cancel(self, name: str) -> None:
        """Canceled now: customer.subscription.deleted."""
        now = self.emu.now()
        with self.emu.lock:
            sub = self.subscriptions[name]
            sub.update(status="canceled", canceled_at=now, ended_at=now)
            self.acc.save("subscriptions", sub)
            self.life.emit("customer.subscription.deleted", "subscriptions", sub)
