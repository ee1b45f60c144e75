"""MRR per day and its movements, driven through the emulator's clock, synced and built daily.

One customer of a seeded emulator account (Pro monthly, 29.00, with a 25 % repeating coupon):

  D0 10:00  subscribes, 1 seat: new 21.75
  D1 10:00  3 seats: expansion 43.50 (21.75 → 65.25)
  D2 10:00  2 seats: contraction -21.75 (65.25 → 43.50)
  D3 06:00  the coupon ends, with no event: expansion 14.50 (43.50 → 58.00)
  D4 10:00  cancels: churn -58.00                     (built at 09:00 and again at 12:00)
  D3, D5    no build: the days are reconstructed from the events
  D6 10:00  subscribes again, 2 seats: reactivation 58.00
  D7        the other warehouses are built

The coupon is LAUNCH25 (25 % for 3 months) with its `end` set to D3 06:00, so that the
whole story stays inside Stripe's 30 days of events: the MRR rule reads a discount's `end`.
Every sync and build runs at the emulator's clock. A second warehouse, first built at D7 with the
story's events in its raw tables, reconstructs the same days from the events and must find the same
movements; a third, with invoices only, shows what they can't tell.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestration.core.errors import BuildError
from orchestration.core.settings import PROJECT_ROOT
from orchestration.core.warehouse import with_database
from orchestration.emulator import Emulator, start_emulator
from orchestration.emulator.catalog import INTERVAL_SECONDS
from orchestration.emulator.lifecycle import Lifecycle
from orchestration.extract import sync_stripe
from orchestration.transform.runner import build
from tests.conftest import _create_database, _drop_database
from tests.dbt.conftest import fetch_dicts

D0 = datetime(2026, 11, 2, tzinfo=UTC)  # a midnight UTC: days of the story are UTC days
HOUR = 3600
DAY = 86_400
MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")
SUM_TEST = "assert_mrr_movements__sum_to_mrr_change"


def day(n: int) -> datetime:
    """The UTC date of the story's day n, as a datetime at its midnight."""
    return D0 + timedelta(days=n)


class Story:
    """The scenario customer's Stripe objects, changed through the emulator's own store and
    lifecycle, so every change carries the event Stripe would send."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.acc = emu.account
        self.life = Lifecycle(self.acc, random.Random(0))  # noqa: S311 - reproducible
        prices = self.acc.catalog.prices.values()
        self.price = next(p for p in prices if p["nickname"] == "Pro monthly" and not p["livemode"])
        coupons = self.acc.catalog.coupons.values()
        self.coupon = next(c for c in coupons if c["percent_off"] == 25 and not c["livemode"])
        self.customer_id = ""
        self.subscription: dict[str, Any] = {}

    def _now(self) -> int:
        return self.emu.now()

    def subscribe(self, quantity: int, *, coupon_days: float | None) -> None:
        """A new active subscription (and, the first time, its customer), billed now."""
        now = self._now()
        with self.emu.lock:
            if not self.customer_id:
                template = self.acc.store.pick("customers", False, None, 0.0)
                assert template is not None
                customer = {
                    **copy.deepcopy(template),
                    "id": self.acc.new_row_id("cus_", 14),
                    "created": now,
                    "currency": "usd",
                    "delinquent": False,
                    "email": "mrr.story@example.com",
                    "name": "Mrr Story",
                }
                customer.pop("discount", None)
                self.customer_id = customer["id"]
                self.acc.save("customers", customer)
                self.life.emit("customer.created", "customers", customer)
            discount = None
            if coupon_days is not None:
                discount = {
                    "id": self.acc.new_id("di_", 14),
                    "coupon": self.coupon["id"],
                    "start": now,
                    "end": now + int(coupon_days * DAY),
                }
            sub = {
                "id": self.acc.new_row_id("sub_"),
                "object": "subscription",
                "billing_cycle_anchor": now,
                "cancel_at": None,
                "cancel_at_period_end": False,
                "canceled_at": None,
                "created": now,
                "currency": "usd",
                "customer": self.customer_id,
                "discount": discount,
                "ended_at": None,
                "items": [[self.acc.new_id("si_", 14), self.price["id"], quantity, now]],
                "latest_invoice": None,
                "livemode": False,
                "period": [now, now + INTERVAL_SECONDS["month"]],
                "start_date": now,
                "status": "active",
                "trial_end": None,
                "trial_start": None,
            }
            self.subscription = sub
            self.acc.save("subscriptions", sub)
            self.life.emit("customer.subscription.created", "subscriptions", sub)
            self.life.bill(sub, ok=True)

    def change_quantity(self, quantity: int) -> None:
        """More or fewer seats: customer.subscription.updated."""
        with self.emu.lock:
            before = copy.deepcopy(self.subscription)
            self.subscription["items"][0][2] = quantity
            self.life.save_sub(self.subscription, before)

    def cancel(self) -> None:
        """Canceled now: customer.subscription.deleted."""
        now = self._now()
        with self.emu.lock:
            self.subscription.update(status="canceled", canceled_at=now, ended_at=now)
            self.acc.save("subscriptions", self.subscription)
            self.life.emit("customer.subscription.deleted", "subscriptions", self.subscription)


@dataclass
class Warehouse:
    """A database built by the scenario, alive during the module's tests."""

    url: str
    target: Path

    def movements(self, customer_id: str) -> list[dict[str, object]]:
        return fetch_dicts(
            self.url,
            "select * from stripe.mrr_movements"
            f" where stripe_customer_id = '{customer_id}' order by mrr_date, mrr_currency",
        )

    def daily(self, customer_id: str) -> list[dict[str, object]]:
        return fetch_dicts(
            self.url,
            "select * from stripe.mrr_daily"
            f" where stripe_customer_id = '{customer_id}' order by mrr_date",
        )


@dataclass
class Scenario:
    """The warehouses the story built, and its customer."""

    daily: Warehouse  # synced and built every day of the story but D3 and D5
    from_events: Warehouse  # synced before the story and at D7, first built at D7
    from_invoices: Warehouse  # backfilled at D7, its stored events deleted, built once
    customer_id: str
    d4_morning: list[dict[str, object]]  # the daily warehouse's rows after D4's 09:00 build


def _at(emu: Emulator, moment: datetime) -> None:
    """Moves the emulator's clock to a moment of the story."""
    emu.advance_clock(int(moment.timestamp()) - emu.now())


def _sync(emu: Emulator, warehouse: Warehouse) -> None:
    sync_stripe(warehouse.url, emu.test_key, api_base=emu.url, max_rps=1000)


def _build(emu: Emulator, warehouse: Warehouse, *, every_test: bool = False) -> None:
    """A build at the emulator's clock. The story's numbers are the point, so the builds in the
    middle of it are the production build (selector `incremental`: every model, the reader_guard
    checks); each warehouse's last build runs every unit and data test on the story's data."""
    as_of = datetime.fromtimestamp(emu.now(), tz=UTC)
    build(
        warehouse.url,
        as_of=as_of,
        livemode=False,
        target_path=warehouse.target,
        selector=None if every_test else "incremental",
    )


@pytest.fixture(scope="module")
def scenario(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    names = [_create_database(server_url, "stripe_sync_test") for _ in range(3)]
    daily, from_events, from_invoices = (
        Warehouse(with_database(server_url, name), tmp_path_factory.mktemp("dbt_target"))
        for name in names
    )
    start = int((D0 + timedelta(hours=1)).timestamp())
    try:
        with start_emulator(customers=12, seed=11, now=start, webhooks=False) as emu:
            story = Story(emu)
            _sync(emu, daily)
            _sync(emu, from_events)
            steps = [
                (0, lambda: story.subscribe(1, coupon_days=3 - 4 / 24)),  # ends at D3 06:00
                (1, lambda: story.change_quantity(3)),
                (2, lambda: story.change_quantity(2)),
                (4, story.cancel),
                (6, lambda: story.subscribe(2, coupon_days=None)),
            ]
            d4_morning: list[dict[str, object]] = []
            for n, change in steps:
                if n == 4:  # a build before the change: the later build replaces the day
                    _at(emu, day(n) + timedelta(hours=9))
                    _sync(emu, daily)
                    _build(emu, daily)
                    d4_morning = daily.daily(story.customer_id)
                _at(emu, day(n) + timedelta(hours=10))
                change()
                _at(emu, day(n) + timedelta(hours=12))
                _sync(emu, daily)
                _build(emu, daily, every_test=n == steps[-1][0])
            _at(emu, day(7) + timedelta(hours=12))
            _sync(emu, from_events)
            _sync(emu, from_invoices)
            with psycopg.connect(from_invoices.url) as conn:
                conn.execute("delete from stripe_raw.events")
            # Two databases: their builds may run side by side.
            with ThreadPoolExecutor(max_workers=2) as pool:
                builds = [
                    pool.submit(_build, emu, w, every_test=True)
                    for w in (from_events, from_invoices)
                ]
                for done in builds:
                    done.result()
            yield Scenario(daily, from_events, from_invoices, story.customer_id, d4_morning)
    finally:
        for name in names:
            _drop_database(server_url, name)


def _amounts(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """(date, the non-zero movement's name, its amount) per row."""
    out = []
    for row in rows:
        moved = [(name, row[name]) for name in MOVEMENTS if row[name] != 0]
        assert len(moved) == 1, row
        out.append((row["mrr_date"], *moved[0]))
    return out


EXPECTED = [
    (day(0).date(), "new", Decimal("21.75")),
    (day(1).date(), "expansion", Decimal("43.50")),
    (day(2).date(), "contraction", Decimal("-21.75")),
    (day(3).date(), "expansion", Decimal("14.50")),
    (day(4).date(), "churn", Decimal("-58.00")),
    (day(6).date(), "reactivation", Decimal("58.00")),
]


def test_each_change_is_one_movement_to_the_cent(scenario: Scenario) -> None:
    rows = scenario.daily.movements(scenario.customer_id)
    assert _amounts(rows) == EXPECTED
    assert {row["mrr_currency"] for row in rows} == {"usd"}
    assert not any(row["livemode"] for row in rows)


def test_daily_mrr_is_the_rule_at_each_days_end(scenario: Scenario) -> None:
    rows = scenario.daily.daily(scenario.customer_id)
    got = [(row["mrr_date"], row["customer_mrr"], row["is_reconstructed"]) for row in rows]
    assert got == [
        (day(0).date(), Decimal("21.75"), False),
        (day(1).date(), Decimal("65.25"), False),
        (day(2).date(), Decimal("43.50"), False),
        (day(3).date(), Decimal("58.00"), True),  # no build: from the events
        (day(4).date(), Decimal("0"), False),  # the day MRR fell to 0; no row on D5: 0
        (day(6).date(), Decimal("58.00"), False),
    ]


def test_a_later_build_on_the_same_day_replaces_the_day(scenario: Scenario) -> None:
    morning = [(r["mrr_date"], r["customer_mrr"]) for r in scenario.d4_morning]
    assert morning[-1] == (day(4).date(), Decimal("58.00"))
    rows = fetch_dicts(
        scenario.daily.url,
        f"select * from stripe.mrr_daily where mrr_date = '{day(4).date()}'"
        f" and stripe_customer_id = '{scenario.customer_id}'",
    )
    assert [r["customer_mrr"] for r in rows] == [Decimal("0")]


def test_days_without_a_build_are_reconstructed(scenario: Scenario) -> None:
    with psycopg.connect(scenario.daily.url) as conn:
        flags = dict(
            conn.execute(
                "select mrr_date, bool_and(is_reconstructed) from stripe.mrr_daily"
                " where mrr_date >= %s group by mrr_date",
                (day(0).date(),),
            ).fetchall()
        )
    assert flags == {day(n).date(): n in (3, 5) for n in range(7)}


def test_events_reconstruct_the_same_movements(scenario: Scenario) -> None:
    """A warehouse first built at D7, holding the story's events (Stripe keeps 30 days of
    them), finds every movement the daily builds recorded, all reconstructed."""
    rows = scenario.from_events.movements(scenario.customer_id)
    assert _amounts(rows) == EXPECTED
    assert all(row["is_reconstructed"] for row in rows)
    daily = scenario.from_events.daily(scenario.customer_id)
    assert [r["is_reconstructed"] for r in daily] == [True] * (len(daily) - 1) + [False]


def test_invoices_alone_miss_changes_inside_a_period(scenario: Scenario) -> None:
    """Without events, a subscription's invoices give its MRR per billed period: the seats
    changed and the coupon ended inside the first period, so they are not seen (the documented
    limit), and the cancellation cuts the period at canceled_at."""
    rows = scenario.from_invoices.movements(scenario.customer_id)
    assert _amounts(rows) == [
        (day(0).date(), "new", Decimal("21.75")),
        (day(4).date(), "churn", Decimal("-21.75")),
        (day(6).date(), "reactivation", Decimal("58.00")),
    ]


def _totals(url: str) -> dict[tuple[str, object], Decimal]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select mrr_currency, mrr_date, sum(customer_mrr) from stripe.mrr_daily"
            " where not livemode group by 1, 2"
        ).fetchall()
    return {(currency, date): total for currency, date, total in rows}


def _moved(url: str, first: object, last: object) -> dict[str, Decimal]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select mrr_currency, sum(new + expansion + contraction + churn + reactivation)"
            " from stripe.mrr_movements where mrr_date between %s and %s group by 1",
            (first, last),
        ).fetchall()
    return dict(rows)


@pytest.mark.parametrize("warehouse", ["daily", "from_events", "from_invoices"])
def test_movements_over_a_period_sum_to_the_change_in_total_mrr(
    scenario: Scenario, warehouse: str
) -> None:
    url = getattr(scenario, warehouse).url
    totals = _totals(url)
    dates = sorted({date for _, date in totals})
    currencies = {currency for currency, _ in totals}
    assert len(dates) > 8 and "usd" in currencies
    for first, last in [
        (dates[1], dates[-1]),
        (day(1).date(), day(4).date()),
        (day(3).date(), day(3).date()),
    ]:
        moved = _moved(url, first, last)
        for currency in currencies:
            change = totals.get((currency, last), 0) - totals.get(
                (currency, first - timedelta(days=1)), 0
            )
            assert moved.get(currency, 0) == change, (currency, first, last)


def test_the_sum_test_fails_when_movements_do_not_add_up(scenario: Scenario) -> None:
    """A movement a cent off (its own row still consistent) breaks the sum; rebuilding
    mrr_movements from mrr_daily, with its tests (the sum test among them), repairs it."""
    warehouse = scenario.daily
    as_of = day(6) + timedelta(hours=12)
    with psycopg.connect(warehouse.url) as conn:
        corrupted = conn.execute(
            "update stripe.mrr_movements set expansion = expansion + 0.01,"
            " customer_mrr = customer_mrr + 0.01 where expansion > 0"
        )
        assert corrupted.rowcount > 0
    try:
        with pytest.raises(BuildError, match=SUM_TEST):
            build(
                warehouse.url,
                as_of=as_of,
                livemode=False,
                select=SUM_TEST,
                target_path=warehouse.target,
            )
    finally:
        build(
            warehouse.url,
            as_of=as_of,
            livemode=False,
            select="mrr_movements",
            target_path=warehouse.target,
        )


def test_readmes_month_bridge_runs_and_balances(scenario: Scenario) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("## MRR movements") :]
    query = section.split("```sql\n", 1)[1].split("```", 1)[0]
    assert "date '2026-11-01'" in query and "livemode = false" in query
    rows = fetch_dicts(scenario.daily.url, query)
    assert rows and "usd" in {row["mrr_currency"] for row in rows}
    for row in rows:
        moved = sum(row[name] for name in MOVEMENTS)
        assert row["start_mrr"] + moved == row["end_mrr"], row
    usd = next(row for row in rows if row["mrr_currency"] == "usd")
    # The story's customer is in November's bridge: its new MRR, and its churn at least.
    assert usd["new"] >= Decimal("21.75") and usd["churn"] <= Decimal("-58.00")
