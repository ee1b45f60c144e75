"""The demo account's products, prices and coupons: every billing shape the pipeline must handle."""

from __future__ import annotations

from typing import Any

DAY = 86_400
# Stripe bills by calendar; fixed average lengths keep generation fast and are close enough here.
INTERVAL_SECONDS = {"day": DAY, "week": 7 * DAY, "month": 2_629_746, "year": 31_556_952}

# (key, product key, currency, unit_amount, interval, interval_count, usage_type, nickname, weight)
PRICES: list[tuple[str, str, str, int, str | None, int, str, str, int]] = [
    ("starter_month", "starter", "usd", 900, "month", 1, "licensed", "Starter monthly", 30),
    ("starter_year", "starter", "usd", 9_000, "year", 1, "licensed", "Starter yearly", 8),
    ("pro_month", "pro", "usd", 2_900, "month", 1, "licensed", "Pro monthly", 22),
    ("pro_year", "pro", "usd", 29_000, "year", 1, "licensed", "Pro yearly", 6),
    ("pro_quarter", "pro", "usd", 7_500, "month", 3, "licensed", "Pro quarterly", 4),
    ("pro_eur_month", "pro", "eur", 2_700, "month", 1, "licensed", "Pro monthly (EUR)", 6),
    ("business_month", "business", "usd", 9_900, "month", 1, "licensed", "Business monthly", 6),
    ("business_week", "business", "usd", 2_500, "week", 1, "licensed", "Business weekly", 2),
    ("daily_pass", "daypass", "usd", 300, "day", 1, "licensed", "Daily pass", 2),
    ("jp_month", "japan", "jpy", 3_000, "month", 1, "licensed", "Japan monthly (JPY)", 3),
    ("kw_month", "kuwait", "kwd", 5_500, "month", 1, "licensed", "Kuwait monthly (KWD)", 2),
    ("api_metered", "api", "usd", 2, "month", 1, "metered", "API calls", 0),
    ("seat_addon", "seats", "usd", 500, "month", 1, "licensed", "Extra seat", 0),
    ("setup_fee", "setup", "usd", 4_900, None, 1, "licensed", "Setup fee", 0),
]

# Add-on modules a few subscriptions stack beyond the 10 items Stripe embeds in a subscription
# (generator.py). Never a first item (weight 0), and cheaper than every plan, so no upgrade picks
# one either.
MODULE_PRICES: list[tuple[str, str, str, int, str | None, int, str, str, int]] = [
    (f"module_{i:02d}", "modules", "usd", 100 + 25 * i, "month", 1, "licensed", f"Module {i}", 0)
    for i in range(1, 31)
]

# Each row: the product key, its name and its description.
PRODUCTS: list[tuple[str, str, str | None]] = [
    ("starter", "Starter", "For individuals getting started."),
    ("pro", "Pro", "For growing teams."),
    ("business", "Business", "For companies with advanced needs."),
    ("daypass", "Day Pass", None),
    ("japan", "Pro Japan", "Billed in yen."),
    ("kuwait", "Pro Kuwait", "Billed in dinar."),
    ("api", "API usage", "Metered API calls."),
    ("seats", "Extra seats", None),
    ("setup", "Onboarding", "One-time setup."),
    ("legacy", "Legacy plan", "Retired and deleted."),
]
MODULE_PRODUCTS: list[tuple[str, str, str | None]] = [
    ("modules", "Add-on modules", "One price per module."),
]

# Each row: id, name, percent off, amount off (in minor units of its currency), currency, duration
# and duration in months. Every kind MRR treats differently: once/repeating/forever, percent and
# amount off, and an amount in a zero-decimal currency.
COUPONS: list[tuple[str, str, float | None, int | None, str | None, str, int | None]] = [
    ("LAUNCH25", "25% off for 3 months", 25.0, None, None, "repeating", 3),
    ("LOYAL10", "10% off forever", 10.0, None, None, "forever", None),
    ("WELCOME5", "$5 off first invoice", None, 500, "usd", "once", None),
    ("PARTNER2", "$2 off forever", None, 200, "usd", "forever", None),
    ("HALFYEAR50", "50% off for 6 months", 50.0, None, None, "repeating", 6),
    ("YEN500", "¥500 off forever", None, 500, "jpy", "forever", None),
]


def product_object(obj_id: str, key: str, created: int, livemode: bool) -> dict[str, Any]:
    """A product in Stripe's shape."""
    name, description = next((n, d) for k, n, d in PRODUCTS + MODULE_PRODUCTS if k == key)
    return {
        "id": obj_id,
        "object": "product",
        "active": key != "legacy",
        "created": created,
        "default_price": None,
        "description": description,
        "images": [],
        "livemode": livemode,
        "marketing_features": [],
        "metadata": {"key": key},
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": created,
        "url": None,
    }


def price_object(
    obj_id: str, spec: tuple, product_id: str, created: int, livemode: bool
) -> dict[str, Any]:
    """A price in Stripe's shape from one PRICES row."""
    key, _, currency, amount, interval, count, usage, nickname, _ = spec
    recurring = None
    if interval is not None:
        recurring = {
            "interval": interval,
            "interval_count": count,
            "meter": None,
            "trial_period_days": None,
            "usage_type": usage,
        }
    return {
        "id": obj_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": livemode,
        "lookup_key": key,
        "metadata": {},
        "nickname": nickname,
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": amount,
        "unit_amount_decimal": str(amount),
    }


def is_module(price: dict[str, Any]) -> bool:
    """True for an add-on module's price (MODULE_PRICES)."""
    return (price.get("lookup_key") or "").startswith("module_")


def plan_from_price(price: dict[str, Any]) -> dict[str, Any]:
    """The legacy plan object Stripe derives from a recurring price (same id)."""
    rec = price["recurring"]
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": price["created"],
        "currency": price["currency"],
        "interval": rec["interval"],
        "interval_count": rec["interval_count"],
        "livemode": price["livemode"],
        "metadata": {},
        "meter": None,
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": rec["usage_type"],
    }


def coupon_object(spec: tuple, created: int, livemode: bool, redeemed: int) -> dict[str, Any]:
    """A coupon in Stripe's shape from one COUPONS row."""
    cid, name, percent, amount, currency, duration, months = spec
    return {
        "id": cid,
        "object": "coupon",
        "amount_off": amount,
        "created": created,
        "currency": currency,
        "duration": duration,
        "duration_in_months": months,
        "livemode": livemode,
        "max_redemptions": None,
        "metadata": {},
        "name": name,
        "percent_off": percent,
        "redeem_by": None,
        "times_redeemed": redeemed,
        "valid": True,
    }
