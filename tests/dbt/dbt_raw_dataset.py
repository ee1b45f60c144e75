"""A small hand-made raw dataset (realistic Stripe JSON) and the marts it must produce.

Every customer exercises some rules; the expected values are computed by hand in the comments, so a
failing cell points at one rule. "Now" is AS_OF; the build runs in test mode (livemode false).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

AS_OF = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
SYNCED_AT = datetime(2026, 11, 20, 11, 0, 0, tzinfo=UTC)
NEW_API = "2026-10-28.endive"
OLD_API = "2024-06-20"


def ago(days: float = 0, hours: float = 0, seconds: float = 0) -> datetime:
    """A time before AS_OF."""
    return AS_OF - timedelta(days=days, hours=hours, seconds=seconds)


def epoch(moment: datetime | None) -> int | None:
    """Stripe's Unix-seconds timestamps."""
    return None if moment is None else int(moment.timestamp())


# ---------------------------------------------------------------------------- Stripe objects


def product(product_id: str, name: str) -> dict[str, Any]:
    return {
        "id": product_id,
        "object": "product",
        "active": True,
        "created": epoch(ago(500)),
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": False,
        "metadata": {},
        "name": name,
        "type": "service",
        "updated": epoch(ago(500)),
    }


def price(
    price_id: str,
    product_ref: str | dict[str, Any],
    unit_amount: int,
    currency: str,
    interval: str,
    interval_count: int = 1,
    usage_type: str = "licensed",
    nickname: str | None = None,
) -> dict[str, Any]:
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": epoch(ago(500)),
        "currency": currency,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": nickname,
        "product": product_ref,
        "recurring": {
            "interval": interval,
            "interval_count": interval_count,
            "meter": None,
            "trial_period_days": None,
            "usage_type": usage_type,
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


PRICE_PRO = price("price_pro_monthly", "prod_pro", 4900, "usd", "month", nickname="Pro monthly")
PRICE_TEAM = price(
    "price_team_yearly",
    {"id": "prod_team", "object": "product", "name": "Team", "active": True},
    120000,
    "usd",
    "year",
)
PRICE_BASIC = price("price_basic_monthly", "prod_basic", 1900, "usd", "month", nickname="Basic")
PRICE_JP = price("price_jp_monthly", "prod_jp", 5000, "jpy", "month", nickname="Tokyo monthly")
PRICE_JP_METERED = price("price_jp_metered", "prod_jp", 10, "jpy", "month", usage_type="metered")
PRICE_KW = price("price_kw_biweekly", "prod_kw", 12345, "kwd", "week", interval_count=2)
PRICE_DAILY = price("price_daily", "prod_pro", 100, "usd", "day", nickname="Daily pass")
PRICE_SMALL = price("price_small", "prod_basic", 1000, "usd", "month")
PRICE_MEDIUM = price("price_medium", "prod_pro", 2000, "usd", "month", nickname="Medium")
PRICE_EUR = price("price_eur_monthly", "prod_pro", 3000, "eur", "month")
PRICE_QUARTERLY = price("price_quarterly", "prod_pro", 30000, "usd", "month", interval_count=3)
PRICES = [
    PRICE_PRO,
    PRICE_TEAM,
    PRICE_BASIC,
    PRICE_JP,
    PRICE_JP_METERED,
    PRICE_KW,
    PRICE_DAILY,
    PRICE_SMALL,
    PRICE_MEDIUM,
    PRICE_EUR,
    PRICE_QUARTERLY,
]
# prod_team is deliberately missing: its name comes from the price's expanded product.
PRODUCTS = [
    product("prod_pro", "Pro"),
    product("prod_basic", "Basic"),
    product("prod_jp", "Tokyo Plan"),
    product("prod_kw", "Gulf Plan"),
]


def customer(
    customer_id: str,
    *,
    email: str | None,
    name: str | None,
    created: datetime,
    currency: str | None = "usd",
    phone: str | None = None,
    description: str | None = None,
    delinquent: bool = False,
    address: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    return {
        "id": customer_id,
        "object": "customer",
        "address": address,
        "balance": 0,
        "created": epoch(created),
        "currency": currency,
        "default_source": None,
        "delinquent": delinquent,
        "description": description,
        "discount": None,
        "email": email,
        "invoice_prefix": customer_id[-6:].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": name,
        "next_invoice_sequence": 2,
        "phone": phone,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def address(
    line1: str, line2: str | None, city: str, state: str | None, country: str, postal: str
) -> dict[str, str | None]:
    return {
        "city": city,
        "country": country,
        "line1": line1,
        "line2": line2,
        "postal_code": postal,
        "state": state,
    }


def item(
    item_id: str,
    subscription_id: str,
    item_price: dict[str, Any],
    quantity: int | None,
    *,
    period_start: datetime | None,
) -> dict[str, Any]:
    """A subscription item; period_start None renders the pre-2025-03-31 shape (no period)."""
    data: dict[str, Any] = {
        "id": item_id,
        "object": "subscription_item",
        "created": epoch(ago(400)),
        "discounts": [],
        "metadata": {},
        "price": item_price,
        "subscription": subscription_id,
        "tax_rates": [],
    }
    if quantity is not None:  # metered items have no quantity
        data["quantity"] = quantity
    if period_start is not None:
        data["current_period_start"] = epoch(period_start)
        data["current_period_end"] = epoch(period_start + timedelta(days=30))
    return data


def coupon(
    coupon_id: str,
    *,
    duration: str,
    percent_off: float | None = None,
    amount_off: int | None = None,
    currency: str | None = None,
    months: int | None = None,
) -> dict[str, Any]:
    return {
        "id": coupon_id,
        "object": "coupon",
        "amount_off": amount_off,
        "created": epoch(ago(400)),
        "currency": currency,
        "duration": duration,
        "duration_in_months": months,
        "livemode": False,
        "max_redemptions": None,
        "metadata": {},
        "name": coupon_id.title(),
        "percent_off": percent_off,
        "redeem_by": None,
        "times_redeemed": 1,
        "valid": True,
    }


def discount(
    discount_id: str,
    subscription_id: str,
    customer_id: str,
    the_coupon: dict[str, Any],
    *,
    start: datetime,
    end: datetime | None = None,
    clover: bool = False,
) -> dict[str, Any]:
    """A discount; clover=True renders the 2025-09-30.clover shape (coupon under `source`)."""
    data: dict[str, Any] = {
        "id": discount_id,
        "object": "discount",
        "checkout_session": None,
        "customer": customer_id,
        "end": epoch(end),
        "invoice": None,
        "invoice_item": None,
        "promotion_code": None,
        "start": epoch(start),
        "subscription": subscription_id,
        "subscription_item": None,
    }
    if clover:
        data["source"] = {"coupon": the_coupon, "type": "coupon"}
    else:
        data["coupon"] = the_coupon
    return data


def subscription(
    subscription_id: str,
    customer_id: str,
    status: str,
    *,
    created: datetime,
    items: list[dict[str, Any]],
    new_api: bool = True,
    period_start: datetime | None = None,
    trial_start: datetime | None = None,
    trial_end: datetime | None = None,
    canceled_at: datetime | None = None,
    cancel_at_period_end: bool = False,
    legacy_discount: dict[str, Any] | None = None,
    discounts: list[Any] | None = None,
) -> dict[str, Any]:
    first_price = items[0]["price"]
    data: dict[str, Any] = {
        "id": subscription_id,
        "object": "subscription",
        "application": None,
        "billing_cycle_anchor": epoch(created),
        "cancel_at": None,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": epoch(canceled_at),
        "collection_method": "charge_automatically",
        "created": epoch(created),
        "currency": first_price["currency"],
        "customer": customer_id,
        "default_payment_method": None,
        "discounts": discounts or [],
        "ended_at": epoch(canceled_at),
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={subscription_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": {},
        "pause_collection": None,
        "start_date": epoch(created),
        "status": status,
        "test_clock": None,
        "trial_end": epoch(trial_end),
        "trial_start": epoch(trial_start),
    }
    if not new_api:
        # Before 2025-03-31.basil: period on the subscription, single-plan `plan`/`quantity`,
        # the legacy `discount` object, no `currency`.
        data["current_period_start"] = epoch(period_start)
        data["current_period_end"] = (
            epoch(period_start + timedelta(days=30)) if period_start else None
        )
        data["plan"] = {**first_price, "object": "plan", "amount": first_price["unit_amount"]}
        data["quantity"] = items[0].get("quantity")
        data["discount"] = legacy_discount
        del data["currency"]
    return data


def charge(
    charge_id: str,
    customer_id: str,
    amount: int,
    currency: str,
    *,
    created: datetime,
    status: str = "succeeded",
    description: str | None = None,
    refunded: int = 0,
    failure_message: str | None = None,
) -> dict[str, Any]:
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if status == "succeeded" else 0,
        "amount_refunded": refunded,
        "balance_transaction": None,
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "captured": status == "succeeded",
        "created": epoch(created),
        "currency": currency,
        "customer": customer_id,
        "description": description,
        "disputed": False,
        "failure_code": "card_declined" if failure_message else None,
        "failure_message": failure_message,
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "outcome": {"network_status": "approved_by_network", "type": "authorized"},
        "paid": status == "succeeded",
        "payment_intent": None,
        "payment_method": "pm_card_visa",
        "refunded": refunded == amount and amount > 0,
        "status": status,
    }


def invoice(
    invoice_id: str,
    customer_id: str,
    subscription_id: str,
    amount: int,
    currency: str,
    *,
    created: datetime,
    status: str = "paid",
) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": amount if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else amount,
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "created": epoch(created),
        "currency": currency,
        "customer": customer_id,
        "livemode": False,
        "number": f"{invoice_id.upper()}-0001",
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": subscription_id},
            "type": "subscription_details",
        },
        "status": status,
        "total": amount,
    }


def event(
    event_id: str,
    event_type: str,
    obj: dict[str, Any],
    *,
    created: datetime,
    previous_attributes: dict[str, Any] | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id,
        "object": "event",
        "api_version": NEW_API,
        "created": epoch(created),
        "data": data,
        "livemode": livemode,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def store_event(
    conn: psycopg.Connection,
    evt: dict[str, Any],
    *,
    snapshot_at: datetime,
    synced_at: datetime | None = None,
) -> None:
    """Inserts one event into stripe_raw.events as a sync stores it (synced_at: now if None)."""
    conn.execute(
        "insert into stripe_raw.events (id, livemode, created, data, is_deleted, snapshot_at,"
        " synced_at, type, object_id, api_version)"
        " values (%s, %s, %s, %s::jsonb, false, %s, coalesce(%s::timestamptz, now()), %s, %s, %s)",
        (
            evt["id"],
            evt["livemode"],
            datetime.fromtimestamp(evt["created"], UTC),
            json.dumps(evt),
            snapshot_at,
            synced_at,
            evt["type"],
            evt["data"]["object"]["id"],
            evt["api_version"],
        ),
    )


# ---------------------------------------------------------------------------- the dataset

# A: new API shape; a clover-shaped forever 20 % discount and a bare discount id.
#    MRR 4900 * 0.8 = 3920 -> 39.20. Activity matched by email in another case, 1 day ago.
SUB_A1 = subscription(
    "sub_A1",
    "cus_A1ice",
    "active",
    created=ago(60),
    items=[item("si_A1", "sub_A1", PRICE_PRO, 1, period_start=ago(10))],
    discounts=[
        discount(
            "di_A1",
            "sub_A1",
            "cus_A1ice",
            coupon("SAVE20", duration="forever", percent_off=20),
            start=ago(60),
            clover=True,
        ),
        "di_bare_id_is_ignored",
    ],
)
# B: old API shape (period on the subscription, legacy `discount`), yearly 1200.00 x 2, a
#    repeating amount_off of 120.00/year until after now:
#    240000 / 12 - 12000 / 12 = 19000 -> 190.00.
SUB_B1 = subscription(
    "sub_B1",
    "cus_B0b",
    "active",
    created=ago(300),
    new_api=False,
    period_start=ago(100),
    trial_start=ago(314),
    trial_end=ago(300),
    items=[item("si_B1", "sub_B1", PRICE_TEAM, 2, period_start=None)],
    legacy_discount=discount(
        "di_B1",
        "sub_B1",
        "cus_B0b",
        coupon("LOYAL", duration="repeating", amount_off=12000, currency="usd", months=24),
        start=ago(100),
        end=ago(-200),
    ),
    discounts=["di_B1"],
)
# C: a trialing subscription whose trial ended 6 days ago (still trialing: expired trial),
#    and an older canceled one. Primary: the live one. Trialing counts nothing: MRR 0.
SUB_C1 = subscription(
    "sub_C1",
    "cus_C4rol",
    "canceled",
    created=ago(200),
    canceled_at=ago(150),
    items=[item("si_C1", "sub_C1", PRICE_BASIC, 1, period_start=ago(180))],
)
SUB_C2 = subscription(
    "sub_C2",
    "cus_C4rol",
    "trialing",
    created=ago(20),
    trial_start=ago(20),
    trial_end=ago(6),
    items=[item("si_C2", "sub_C2", PRICE_PRO, 1, period_start=ago(20))],
)
# D: JPY, past due; a metered item (excluded) and a `once` coupon (ignored): MRR 5000 yen.
SUB_D1 = subscription(
    "sub_D1",
    "cus_D4ve",
    "past_due",
    created=ago(100),
    items=[
        item("si_D1", "sub_D1", PRICE_JP, 1, period_start=ago(15)),
        item("si_D2", "sub_D1", PRICE_JP_METERED, None, period_start=ago(15)),
    ],
    discounts=[
        discount(
            "di_D1",
            "sub_D1",
            "cus_D4ve",
            coupon("WELCOME", duration="once", percent_off=50),
            start=ago(100),
        )
    ],
)
# E: KWD, every 2 weeks 12.345: 12345 * 52 / 12 / 2 = 26747.5 -> 26748 -> 26.748.
SUB_E1 = subscription(
    "sub_E1",
    "cus_E3rin",
    "active",
    created=ago(50),
    items=[item("si_E1", "sub_E1", PRICE_KW, 1, period_start=ago(8))],
)
# F: daily 1.00: 100 * 365 / 12 = 3041.67 -> 3042 -> 30.42. A repeating 50 % that ended
#    yesterday and a forever 10 % that starts tomorrow: neither in effect.
SUB_F1 = subscription(
    "sub_F1",
    "cus_Fr4nk",
    "active",
    created=ago(30),
    items=[item("si_F1", "sub_F1", PRICE_DAILY, 1, period_start=ago(1))],
    discounts=[
        discount(
            "di_F1",
            "sub_F1",
            "cus_Fr4nk",
            coupon("HALF3", duration="repeating", percent_off=50, months=1),
            start=ago(30),
            end=ago(1),
        ),
        discount(
            "di_F2",
            "sub_F1",
            "cus_Fr4nk",
            coupon("LATER10", duration="forever", percent_off=10),
            start=ago(-1),
        ),
    ],
)
# G: two canceled subscriptions created in the same second: the greater id (sub_G2) is primary.
SUB_G1 = subscription(
    "sub_G1",
    "cus_Gr4ce",
    "canceled",
    created=ago(100),
    new_api=False,
    period_start=ago(70),
    canceled_at=ago(60),
    items=[item("si_G1", "sub_G1", PRICE_BASIC, 1, period_start=None)],
)
SUB_G2 = subscription(
    "sub_G2",
    "cus_Gr4ce",
    "canceled",
    created=ago(100),
    new_api=False,
    period_start=ago(80),
    canceled_at=ago(50),
    items=[item("si_G2", "sub_G2", PRICE_BASIC, 1, period_start=None)],
)
# H: two active subscriptions created in the same second (primary: sub_H2) and an active EUR one
#    (not the customer's currency: counts nothing). MRR 1000 + 2000 = 3000 -> 30.00.
SUB_H1 = subscription(
    "sub_H1",
    "cus_H31di",
    "active",
    created=ago(30),
    items=[item("si_H1", "sub_H1", PRICE_SMALL, 1, period_start=ago(5))],
)
SUB_H2 = subscription(
    "sub_H2",
    "cus_H31di",
    "active",
    created=ago(30),
    cancel_at_period_end=True,
    items=[item("si_H2", "sub_H2", PRICE_MEDIUM, 1, period_start=ago(5))],
)
SUB_H3 = subscription(
    "sub_H3",
    "cus_H31di",
    "active",
    created=ago(40),
    items=[item("si_H3", "sub_H3", PRICE_EUR, 1, period_start=ago(5))],
)
# N: quarterly 300.00 = 10000/month; forever 10 % then forever 30.00/quarter (= 10.00/month):
#    10000 * 0.9 - 1000 = 8000 -> 80.00. Old-shape coupon objects inside the `discounts` list.
SUB_N1 = subscription(
    "sub_N1",
    "cus_N0ra",
    "active",
    created=ago(45),
    items=[item("si_N1", "sub_N1", PRICE_QUARTERLY, 1, period_start=ago(45))],
    discounts=[
        discount(
            "di_N1",
            "sub_N1",
            "cus_N0ra",
            coupon("TEN", duration="forever", percent_off=10),
            start=ago(45),
        ),
        discount(
            "di_N2",
            "sub_N1",
            "cus_N0ra",
            coupon("THIRTY", duration="forever", amount_off=3000, currency="usd"),
            start=ago(45),
        ),
    ],
)
# M: an older active subscription (10.00, counts) and a newer unpaid one (live, so primary):
#    churned by status, MRR 10.00.
SUB_M0 = subscription(
    "sub_M0",
    "cus_M4x",
    "active",
    created=ago(300),
    items=[item("si_M0", "sub_M0", PRICE_SMALL, 1, period_start=ago(3))],
)
SUB_M1 = subscription(
    "sub_M1",
    "cus_M4x",
    "unpaid",
    created=ago(60),
    items=[item("si_M1", "sub_M1", PRICE_BASIC, 1, period_start=ago(30))],
)
# K: boundaries: trial ends exactly now (not expired), last activity exactly 2 days ago (not
#    slipping).
SUB_K1 = subscription(
    "sub_K1",
    "cus_K4te",
    "trialing",
    created=ago(14),
    trial_start=ago(14),
    trial_end=AS_OF,
    items=[item("si_K1", "sub_K1", PRICE_PRO, 3, period_start=ago(14))],
)
# I: a deleted customer's subscription; L: a live-mode one. Neither may show.
SUB_I1 = subscription(
    "sub_I1",
    "cus_Iv4n",
    "active",
    created=ago(30),
    items=[item("si_I1", "sub_I1", PRICE_PRO, 1, period_start=ago(5))],
)
SUB_L1 = subscription(
    "sub_L1",
    "cus_L1ve",
    "active",
    created=ago(30),
    items=[item("si_L1", "sub_L1", PRICE_PRO, 1, period_start=ago(5))],
)

CUSTOMERS = [
    customer(
        "cus_A1ice",
        email="alice@example.com",
        name="Alice Martin",
        created=ago(90),
        phone="+14155550101",
        description="Pro plan since 2026",
        address=address("1 Main St", "Suite 5", "San Francisco", "CA", "US", "94105"),
    ),
    customer(
        "cus_B0b",
        email="bob@example.com",
        name="Bob Stone",
        created=ago(400),
        delinquent=False,
        address=address("22 Rue de Rivoli", None, "Paris", None, "FR", "75001"),
    ),
    customer(
        "cus_C4rol", email="carol@example.com", name="Carol Diaz", created=ago(20), currency=None
    ),
    customer(
        "cus_D4ve",
        email="dave@example.jp",
        name="Dave Sato",
        created=ago(200),
        currency="jpy",
        delinquent=True,
        address=address("1-1 Chiyoda", "", "Tokyo", "Tokyo", "JP", "100-0001"),
    ),
    customer(
        "cus_E3rin", email="erin@example.com", name="Erin Al-Sabah", created=ago(50), currency="kwd"
    ),
    customer("cus_Fr4nk", email="frank@example.com", name="Frank Moss", created=ago(30)),
    customer("cus_Gr4ce", email="grace@example.com", name="Grace Hu", created=ago(120)),
    customer("cus_H31di", email="heidi@example.com", name="Heidi Berg", created=ago(35)),
    customer("cus_N0ra", email="nora@example.com", name=None, created=ago(45)),
    customer("cus_M4x", email="max@example.com", name="Max Roy", created=ago(310)),
    customer("cus_K4te", email="kate@example.com", name="Kate Ng", created=ago(14), currency=None),
    customer("cus_J0dy", email="judy@example.com", name="Judy Park", created=ago(1), currency=None),
]
DELETED_CUSTOMER = {"id": "cus_Iv4n", "object": "customer", "deleted": True}
LIVE_CUSTOMER = {
    **customer("cus_L1ve", email="live@example.com", name="Live", created=ago(5)),
    "livemode": True,
}

SUBSCRIPTIONS = [
    SUB_A1,
    SUB_B1,
    SUB_C1,
    SUB_C2,
    SUB_D1,
    SUB_E1,
    SUB_F1,
    SUB_G1,
    SUB_G2,
    SUB_H1,
    SUB_H2,
    SUB_H3,
    SUB_N1,
    SUB_M0,
    SUB_M1,
    SUB_K1,
    SUB_I1,
]

CHARGES = [
    charge("ch_A1", "cus_A1ice", 4900, "usd", created=ago(40), description="Subscription creation"),
    charge("ch_A2", "cus_A1ice", 4900, "usd", created=ago(10), description="Subscription update"),
    charge(
        "ch_A3",
        "cus_A1ice",
        4900,
        "usd",
        created=ago(5),
        status="failed",
        failure_message="Your card was declined.",
    ),
    charge("ch_B1", "cus_B0b", 228000, "usd", created=ago(100)),
    charge("ch_D1", "cus_D4ve", 5000, "jpy", created=ago(45), description="Tokyo Plan"),
    charge("ch_E1", "cus_E3rin", 12345, "kwd", created=ago(8), description="Gulf Plan"),
    # Two charges of H in the same second: the greater id wins.
    charge("ch_H1", "cus_H31di", 1000, "usd", created=ago(5), description="Small"),
    charge("ch_H2", "cus_H31di", 2000, "usd", created=ago(5), description="Medium"),
    charge("ch_I1", "cus_Iv4n", 4900, "usd", created=ago(5)),
]

INVOICES = [
    invoice("in_A1", "cus_A1ice", "sub_A1", 4900, "usd", created=ago(10)),
    invoice("in_D1", "cus_D4ve", "sub_D1", 5000, "jpy", created=ago(45)),
]

ACTIVITY_EVENTS = [
    (None, "  ALICE@Example.COM ", ago(1)),
    ("cus_C4rol", None, ago(3)),
    ("cus_D4ve", None, ago(10)),
    (None, "Erin@Example.com", ago(15)),  # exactly 15 days: not slipping
    (None, "FRANK@example.com", ago(15, seconds=1)),  # one second more: slipping
    ("cus_H31di", "someone-else@example.com", ago(hours=2)),
    ("cus_N0ra", None, ago(hours=1)),
    ("cus_K4te", None, ago(2)),  # exactly 2 days: not slipping
    ("cus_M4x", None, ago(1)),
    ("cus_Gr4ce", None, ago(100)),
    ("cus_nobody", "nobody@example.com", ago(1)),
]

_A1_EXPANDED = {
    **SUB_A1,
    "items": {
        **SUB_A1["items"],
        "data": [{**SUB_A1["items"]["data"][0], "quantity": 2}],
    },
}
_B1_TWO = {**SUB_B1, "quantity": 2}
EVENTS = [
    event("evt_A_customer", "customer.created", CUSTOMERS[0], created=ago(90)),
    event("evt_A_sub_created", "customer.subscription.created", SUB_A1, created=ago(60)),
    event(
        "evt_A_expanded",
        "customer.subscription.updated",
        _A1_EXPANDED,
        created=ago(20),
        previous_attributes={"items": SUB_A1["items"]},
    ),
    event(
        "evt_A_noop",
        "customer.subscription.updated",
        SUB_A1,
        created=ago(19),
        previous_attributes={"cancel_at_period_end": True},
    ),
    event("evt_A_trial_will_end", "customer.subscription.trial_will_end", SUB_A1, created=ago(18)),
    event(
        "evt_A_inv_created",
        "invoice.created",
        invoice("in_A1", "cus_A1ice", "sub_A1", 4900, "usd", created=ago(10), status="draft"),
        created=ago(10),
    ),
    event("evt_A_inv_paid", "invoice.paid", INVOICES[0], created=ago(10)),
    event("evt_A_ch_ok", "charge.succeeded", CHARGES[1], created=ago(10)),
    event("evt_A_ch_fail", "charge.failed", CHARGES[2], created=ago(5)),
    event(
        "evt_A_refund",
        "charge.refunded",
        {**CHARGES[0], "amount_refunded": 4900, "refunded": True},
        created=ago(4),
    ),
    event(
        "evt_B_trial_ended",
        "customer.subscription.updated",
        SUB_B1,
        created=ago(300),
        previous_attributes={"status": "trialing"},
    ),
    event(
        "evt_B_legacy_expanded",
        "customer.subscription.updated",
        _B1_TWO,
        created=ago(200),
        previous_attributes={"quantity": 1},
    ),
    event("evt_C_trial", "customer.subscription.created", SUB_C2, created=ago(20)),
    event("evt_D_inv_paid", "invoice.paid", INVOICES[1], created=ago(45)),
    event("evt_E_charge", "charge.succeeded", CHARGES[5], created=ago(8)),
    event("evt_G_deleted", "customer.subscription.deleted", SUB_G2, created=ago(50)),
    event("evt_I_charge", "charge.succeeded", CHARGES[8], created=ago(5)),
    event(
        "evt_L_charge",
        "charge.succeeded",
        {**charge("ch_L1", "cus_L1ve", 4900, "usd", created=ago(5)), "livemode": True},
        created=ago(5),
        livemode=True,
    ),
]

SYNC_STATE = [
    # object, livemode, status, last_success_at, updated_at, last_error, rows
    ("customers", False, "ok", ago(hours=1), ago(hours=1), None, 12),
    ("subscriptions", False, "running", ago(hours=1), ago(seconds=300), None, 17),
    ("charges", False, "failed", ago(hours=2), ago(hours=1), "Stripe returned 500 three times", 0),
    ("events", False, "ok", ago(hours=25), ago(hours=25), None, 18),
    ("invoices", False, "ok", ago(hours=24), ago(hours=24), None, 2),
    ("prices", False, "running", ago(hours=30), ago(hours=30), None, 11),
    ("customers", True, "ok", ago(hours=1), ago(hours=1), None, 1),
]


def _row(obj: dict[str, Any], *, livemode: bool = False, deleted: bool = False) -> tuple[Any, ...]:
    created = obj.get("created")
    created_at = datetime.fromtimestamp(created, UTC) if created else ago(1)
    return (obj["id"], livemode, created_at, json.dumps(obj), deleted, SYNCED_AT, SYNCED_AT)


def insert_raw_dataset(database_url: str) -> None:
    """Writes the dataset into the stripe_raw tables (which must exist)."""
    tables: dict[str, list[tuple[Any, ...]]] = {
        "customers": [_row(c) for c in CUSTOMERS]
        + [_row(DELETED_CUSTOMER, deleted=True), _row(LIVE_CUSTOMER, livemode=True)],
        "subscriptions": [_row(s) for s in SUBSCRIPTIONS]
        + [_row({**SUB_L1, "livemode": True}, livemode=True)],
        "charges": [_row(c) for c in CHARGES],
        "invoices": [_row(i) for i in INVOICES],
        "prices": [_row(p) for p in PRICES],
        "products": [_row(p) for p in PRODUCTS],
        "checkout_sessions": [],
    }
    # customer_last_sync_at must come from each row's own synced_at: give B another one.
    with psycopg.connect(database_url) as conn:
        for table, rows in tables.items():
            for row in rows:
                conn.execute(
                    f"insert into stripe_raw.{table}"
                    " (id, livemode, created, data, is_deleted, snapshot_at, synced_at)"
                    " values (%s, %s, %s, %s::jsonb, %s, %s, %s)",
                    row,
                )
        conn.execute(
            "update stripe_raw.customers set synced_at = %s where id = 'cus_B0b'",
            (B_SYNCED_AT,),
        )
        # A canceled subscription flagged deleted (customer.subscription.deleted) stays primary.
        conn.execute("update stripe_raw.subscriptions set is_deleted = true where id = 'sub_G2'")
        for evt in EVENTS:
            store_event(conn, evt, snapshot_at=SYNCED_AT, synced_at=SYNCED_AT)
        for customer_id, email, occurred_at in ACTIVITY_EVENTS:
            conn.execute(
                "insert into stripe_raw.activity_events values (%s, %s, %s)",
                (customer_id, email, occurred_at),
            )
        for obj, livemode, status, success, updated, error, rows in SYNC_STATE:
            conn.execute(
                "insert into stripe_raw.sync_state (object, livemode, account_id, status,"
                " cursor, cursor_at, backfill_done, last_success_at, last_error, rows, updated_at)"
                " values (%s, %s, 'acct_1Test', %s, 'evt_A_refund', %s, true, %s, %s, %s, %s)",
                (obj, livemode, status, success, success, error, rows, updated),
            )


B_SYNCED_AT = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)

# ---------------------------------------------------------------------------- expectations

CUSTOMER_FIELDS_COLUMNS = [
    "stripe_customer_id",
    "customer_email",
    "customer_name",
    "customer_mrr",
    "has_unreadable_discount",
    "is_customer_delinquent",
    "customer_description",
    "customer_phone",
    "customer_last_sync_at",
    "customer_city",
    "customer_region",
    "customer_country",
    "customer_postal_code",
    "customer_address",
    "subscription_id",
    "subscription_status",
    "subscription_trial_ends_at",
    "subscription_trial_started_at",
    "subscription_created_at",
    "subscription_canceled_at",
    "subscription_current_period_start",
    "subscription_cancel_at_period_end",
    "product_id",
    "product_name",
    "plan_id",
    "plan_price_in_cents",
    "plan_price",
    "plan_currency",
    "plan_interval",
    "plan_interval_count",
    "plan_nickname",
    "last_amount_paid_in_cents",
    "last_amount_paid",
    "payment_currency",
    "payment_description",
    "last_activity_at",
]

_NO_ADDRESS = {
    "customer_city": None,
    "customer_region": None,
    "customer_country": None,
    "customer_postal_code": None,
    "customer_address": None,
}
_NO_SUBSCRIPTION = {
    "subscription_id": None,
    "subscription_status": None,
    "subscription_trial_ends_at": None,
    "subscription_trial_started_at": None,
    "subscription_created_at": None,
    "subscription_canceled_at": None,
    "subscription_current_period_start": None,
    "subscription_cancel_at_period_end": None,
    "product_id": None,
    "product_name": None,
    "plan_id": None,
    "plan_price_in_cents": None,
    "plan_price": None,
    "plan_currency": None,
    "plan_interval": None,
    "plan_interval_count": None,
    "plan_nickname": None,
}
_NO_PAYMENT = {
    "last_amount_paid_in_cents": None,
    "last_amount_paid": None,
    "payment_currency": None,
    "payment_description": None,
}


def _sub(
    subscription_id: str,
    status: str,
    *,
    created: datetime,
    period_start: datetime | None,
    trial: tuple[datetime, datetime] | None = None,
    canceled_at: datetime | None = None,
    cancel_at_period_end: bool = False,
) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "subscription_status": status,
        "subscription_trial_ends_at": trial[1] if trial else None,
        "subscription_trial_started_at": trial[0] if trial else None,
        "subscription_created_at": created,
        "subscription_canceled_at": canceled_at,
        "subscription_current_period_start": period_start,
        "subscription_cancel_at_period_end": cancel_at_period_end,
    }


def _plan(
    product_id: str,
    product_name: str | None,
    plan_id: str,
    cents: int,
    major: str,
    currency: str,
    interval: str,
    count: int,
    nickname: str | None,
) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "product_name": product_name,
        "plan_id": plan_id,
        "plan_price_in_cents": cents,
        "plan_price": Decimal(major),
        "plan_currency": currency,
        "plan_interval": interval,
        "plan_interval_count": count,
        "plan_nickname": nickname,
    }


def _paid(cents: int, major: str, currency: str, description: str | None) -> dict[str, Any]:
    return {
        "last_amount_paid_in_cents": cents,
        "last_amount_paid": Decimal(major),
        "payment_currency": currency,
        "payment_description": description,
    }


def _customer(
    customer_id: str,
    email: str,
    name: str | None,
    mrr: str,
    *,
    delinquent: bool = False,
    description: str | None = None,
    phone: str | None = None,
    synced_at: datetime = SYNCED_AT,
    unreadable_discount: bool = False,
) -> dict[str, Any]:
    return {
        "stripe_customer_id": customer_id,
        "customer_email": email,
        "customer_name": name,
        "customer_mrr": Decimal(mrr),
        "has_unreadable_discount": unreadable_discount,
        "is_customer_delinquent": delinquent,
        "customer_description": description,
        "customer_phone": phone,
        "customer_last_sync_at": synced_at,
    }


EXPECTED_CUSTOMER_FIELDS: dict[str, dict[str, Any]] = {
    "cus_A1ice": {
        **_customer(
            "cus_A1ice",
            "alice@example.com",
            "Alice Martin",
            "39.20",
            description="Pro plan since 2026",
            phone="+14155550101",
        ),
        "customer_city": "San Francisco",
        "customer_region": "CA",
        "customer_country": "US",
        "customer_postal_code": "94105",
        "customer_address": "1 Main St, Suite 5",
        **_sub("sub_A1", "active", created=ago(60), period_start=ago(10)),
        **_plan(
            "prod_pro", "Pro", "price_pro_monthly", 4900, "49.00", "usd", "month", 1, "Pro monthly"
        ),
        **_paid(4900, "49.00", "usd", "Subscription update"),
        "last_activity_at": ago(1),
    },
    "cus_B0b": {
        **_customer("cus_B0b", "bob@example.com", "Bob Stone", "190.00", synced_at=B_SYNCED_AT),
        "customer_city": "Paris",
        "customer_region": None,
        "customer_country": "FR",
        "customer_postal_code": "75001",
        "customer_address": "22 Rue de Rivoli",
        **_sub(
            "sub_B1",
            "active",
            created=ago(300),
            period_start=ago(100),
            trial=(ago(314), ago(300)),
        ),
        **_plan(
            "prod_team", "Team", "price_team_yearly", 120000, "1200.00", "usd", "year", 1, None
        ),
        **_paid(228000, "2280.00", "usd", None),
        "last_activity_at": ago(400),
    },
    "cus_C4rol": {
        **_customer("cus_C4rol", "carol@example.com", "Carol Diaz", "0.00"),
        **_NO_ADDRESS,
        **_sub(
            "sub_C2", "trialing", created=ago(20), period_start=ago(20), trial=(ago(20), ago(6))
        ),
        **_plan(
            "prod_pro", "Pro", "price_pro_monthly", 4900, "49.00", "usd", "month", 1, "Pro monthly"
        ),
        **_NO_PAYMENT,
        "last_activity_at": ago(3),
    },
    "cus_D4ve": {
        **_customer("cus_D4ve", "dave@example.jp", "Dave Sato", "5000", delinquent=True),
        "customer_city": "Tokyo",
        "customer_region": "Tokyo",
        "customer_country": "JP",
        "customer_postal_code": "100-0001",
        "customer_address": "1-1 Chiyoda",
        **_sub("sub_D1", "past_due", created=ago(100), period_start=ago(15)),
        **_plan(
            "prod_jp",
            "Tokyo Plan",
            "price_jp_monthly",
            5000,
            "5000",
            "jpy",
            "month",
            1,
            "Tokyo monthly",
        ),
        **_paid(5000, "5000", "jpy", "Tokyo Plan"),
        "last_activity_at": ago(10),
    },
    "cus_E3rin": {
        **_customer("cus_E3rin", "erin@example.com", "Erin Al-Sabah", "26.748"),
        **_NO_ADDRESS,
        **_sub("sub_E1", "active", created=ago(50), period_start=ago(8)),
        **_plan(
            "prod_kw", "Gulf Plan", "price_kw_biweekly", 12345, "12.345", "kwd", "week", 2, None
        ),
        **_paid(12345, "12.345", "kwd", "Gulf Plan"),
        "last_activity_at": ago(15),
    },
    "cus_Fr4nk": {
        **_customer("cus_Fr4nk", "frank@example.com", "Frank Moss", "30.42"),
        **_NO_ADDRESS,
        **_sub("sub_F1", "active", created=ago(30), period_start=ago(1)),
        **_plan("prod_pro", "Pro", "price_daily", 100, "1.00", "usd", "day", 1, "Daily pass"),
        **_NO_PAYMENT,
        "last_activity_at": ago(15, seconds=1),
    },
    "cus_Gr4ce": {
        **_customer("cus_Gr4ce", "grace@example.com", "Grace Hu", "0.00"),
        **_NO_ADDRESS,
        **_sub("sub_G2", "canceled", created=ago(100), period_start=ago(80), canceled_at=ago(50)),
        **_plan(
            "prod_basic", "Basic", "price_basic_monthly", 1900, "19.00", "usd", "month", 1, "Basic"
        ),
        **_NO_PAYMENT,
        "last_activity_at": ago(100),
    },
    "cus_H31di": {
        **_customer("cus_H31di", "heidi@example.com", "Heidi Berg", "30.00"),
        **_NO_ADDRESS,
        **_sub("sub_H2", "active", created=ago(30), period_start=ago(5), cancel_at_period_end=True),
        **_plan("prod_pro", "Pro", "price_medium", 2000, "20.00", "usd", "month", 1, "Medium"),
        **_paid(2000, "20.00", "usd", "Medium"),
        "last_activity_at": ago(hours=2),
    },
    "cus_N0ra": {
        **_customer("cus_N0ra", "nora@example.com", None, "80.00"),
        **_NO_ADDRESS,
        **_sub("sub_N1", "active", created=ago(45), period_start=ago(45)),
        **_plan("prod_pro", "Pro", "price_quarterly", 30000, "300.00", "usd", "month", 3, None),
        **_NO_PAYMENT,
        "last_activity_at": ago(hours=1),
    },
    "cus_M4x": {
        **_customer("cus_M4x", "max@example.com", "Max Roy", "10.00"),
        **_NO_ADDRESS,
        **_sub("sub_M1", "unpaid", created=ago(60), period_start=ago(30)),
        **_plan(
            "prod_basic", "Basic", "price_basic_monthly", 1900, "19.00", "usd", "month", 1, "Basic"
        ),
        **_NO_PAYMENT,
        "last_activity_at": ago(1),
    },
    "cus_K4te": {
        **_customer("cus_K4te", "kate@example.com", "Kate Ng", "0.00"),
        **_NO_ADDRESS,
        **_sub("sub_K1", "trialing", created=ago(14), period_start=ago(14), trial=(ago(14), AS_OF)),
        **_plan(
            "prod_pro", "Pro", "price_pro_monthly", 4900, "49.00", "usd", "month", 1, "Pro monthly"
        ),
        **_NO_PAYMENT,
        "last_activity_at": ago(2),
    },
    "cus_J0dy": {
        **_customer("cus_J0dy", "judy@example.com", "Judy Park", "0"),
        **_NO_ADDRESS,
        **_NO_SUBSCRIPTION,
        **_NO_PAYMENT,
        "last_activity_at": ago(1),
    },
}

EXPECTED_SEGMENTS: dict[str, set[str]] = {
    "syncing_with_stripe": set(EXPECTED_CUSTOMER_FIELDS),
    "current_trials": {"cus_C4rol", "cus_K4te"},
    "slipping_trials": {"cus_C4rol"},
    "slipping_customers": {"cus_B0b", "cus_Fr4nk"},
    "expired_trials": {"cus_C4rol"},
    "customers": {
        "cus_A1ice",
        "cus_B0b",
        "cus_D4ve",
        "cus_E3rin",
        "cus_Fr4nk",
        "cus_H31di",
        "cus_N0ra",
    },
    "churned_customers": {"cus_Gr4ce", "cus_M4x"},
    "past_due_subscriptions": {"cus_D4ve"},
}

EXPECTED_FEED: dict[str, tuple[str, str, str, datetime]] = {
    # event id: (customer, activity, summary, occurred_at)
    "evt_A_sub_created": (
        "cus_A1ice",
        "Subscription created",
        "Created subscription sub_A1 for $49.00/month",
        ago(60),
    ),
    "evt_A_expanded": (
        "cus_A1ice",
        "Subscription expanded",
        "Expanded subscription sub_A1 to $98.00/month",
        ago(20),
    ),
    "evt_A_inv_created": (
        "cus_A1ice",
        "Invoice created",
        "Invoice in_A1 created for $49.00",
        ago(10),
    ),
    "evt_A_inv_paid": ("cus_A1ice", "Invoice paid", "Paid invoice in_A1 for $49.00", ago(10)),
    "evt_A_ch_ok": ("cus_A1ice", "Charge succeeded", "Charge ch_A2 of $49.00 succeeded", ago(10)),
    "evt_A_ch_fail": (
        "cus_A1ice",
        "Charge failed",
        "Charge ch_A3 of $49.00 failed: Your card was declined.",
        ago(5),
    ),
    "evt_A_refund": ("cus_A1ice", "Charge refunded", "Refunded $49.00 of charge ch_A1", ago(4)),
    "evt_B_trial_ended": (
        "cus_B0b",
        "Trial ended",
        "Trial ended on subscription sub_B1, now active",
        ago(300),
    ),
    "evt_B_legacy_expanded": (
        "cus_B0b",
        "Subscription expanded",
        "Expanded subscription sub_B1 to $2400.00/year",
        ago(200),
    ),
    "evt_C_trial": (
        "cus_C4rol",
        "Trial started",
        "Started a trial on subscription sub_C2, ending 2026-11-14",
        ago(20),
    ),
    "evt_D_inv_paid": ("cus_D4ve", "Invoice paid", "Paid invoice in_D1 for ¥5000", ago(45)),
    "evt_E_charge": (
        "cus_E3rin",
        "Charge succeeded",
        "Charge ch_E1 of KWD 12.345 succeeded",
        ago(8),
    ),
    "evt_G_deleted": (
        "cus_Gr4ce",
        "Subscription canceled",
        "Canceled subscription sub_G2",
        ago(50),
    ),
}

# Per object: status, last_success_at, last_error, rows.
EXPECTED_SYNC_HEALTH: dict[str, tuple[str, datetime | None, str | None, int]] = {
    "customers": ("ok", ago(hours=1), None, 12),
    "subscriptions": ("running", ago(hours=1), None, 17),
    "charges": ("failed", ago(hours=2), "Stripe returned 500 three times", 0),
    "events": ("stale", ago(hours=25), None, 18),
    "invoices": ("ok", ago(hours=24), None, 2),
    "prices": ("stale", ago(hours=30), None, 11),  # "running" for 30 h: a crashed run
}
