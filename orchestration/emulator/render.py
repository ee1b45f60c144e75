"""Turns compact stored records into Stripe's JSON shape for a given API version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from orchestration.emulator.catalog import plan_from_price
from orchestration.emulator.store import Fragment, dumps

CURRENT_VERSION = "2026-10-28.endive"
# Stripe embeds at most 10 entries of a nested list (a subscription's items, an invoice's lines).
EMBEDDED_ITEMS = 10


@dataclass(frozen=True)
class Shape:
    """The object shapes one API version renders: only Stripe's breaking changes are versioned
    (fields Stripe adds appear on every version, as they do on Stripe)."""

    version: str

    @property
    def basil(self) -> bool:
        """2025-03-31.basil: current_period_* moved from subscriptions to their items; invoices
        name their subscription under `parent` and lost `paid`, `charge`, `payment_intent`,
        `paid_out_of_band` (paid through invoice payments now), charges lost `invoice`; the
        singular `discount` left subscriptions and invoices (`discounts` stays); invoice lines
        carry `pricing`/`parent`/`taxes` instead of `price`/`plan`/`tax_amounts`.

        Not modelled: usage-based prices also lost `aggregate_usage` in basil; the emulator
        omits it on every version (no model reads it)."""
        return self.version[:10] >= "2025-03-31"

    @property
    def clover(self) -> bool:
        """2025-09-30.clover: a discount names its coupon in `source.coupon`, an id unless
        expanded, instead of the auto-expanded `coupon`."""
        return self.version[:10] >= "2025-09-30"


@cache
def shape_for(version: str) -> Shape:
    """The shape of an API version (a date, with or without its release name)."""
    return Shape(version)


CURRENT_SHAPE = shape_for(CURRENT_VERSION)


@dataclass
class Catalog:
    """Prices, plans and coupons of one account, kept in memory and inlined when rendering."""

    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    coupons: dict[str, dict[str, Any]] = field(default_factory=dict)

    _wire: WireCatalog | None = field(default=None, repr=False, compare=False)

    def add_price(self, price: dict[str, Any]) -> None:
        """Registers a price (and its plan when recurring)."""
        self.prices[price["id"]] = price
        if price["recurring"]:
            self.plans[price["id"]] = plan_from_price(price)

    def inline(self, table: str, obj_id: str, optional: bool = False) -> Any:
        """The price, plan or coupon to nest in another object (None if optional and unknown)."""
        objects = getattr(self, table)
        return objects.get(obj_id) if optional else objects[obj_id]

    def for_wire(self) -> Catalog:
        """This catalog nesting pre-serialized JSON, for responses nothing walks before sending."""
        if self._wire is None:
            self._wire = WireCatalog(self.prices, self.plans, self.coupons)
        return self._wire


class WireCatalog(Catalog):
    """A catalog whose nested prices, plans and coupons are JSON already serialized once.

    A subscription nests a price and a plan per item (about 1.6 KB); serializing them again for
    every object of every page was most of a page's CPU. Only for bodies sent as they are:
    expansions walk nested objects, which a Fragment hides.
    """

    def __init__(self, prices: dict, plans: dict, coupons: dict) -> None:
        super().__init__(prices, plans, coupons)
        self._fragments: dict[tuple[str, str], tuple[dict[str, Any], Fragment]] = {}

    def inline(self, table: str, obj_id: str, optional: bool = False) -> Any:
        """The pre-serialized object (re-serialized when the catalog now holds another one)."""
        obj = Catalog.inline(self, table, obj_id, optional)
        if obj is None:
            return None
        cached = self._fragments.get((table, obj_id))
        if cached is None or cached[0] is not obj:
            cached = self._fragments[(table, obj_id)] = (obj, Fragment(dumps(obj)))
        return cached[1]

    def for_wire(self) -> Catalog:
        """Already the wire catalog."""
        return self


_ACCOUNT_LIABILITY = {"type": "account"}
_AUTOMATIC_TAX = {"disabled_reason": None, "enabled": False, "liability": None}
_INVOICE_AUTOMATIC_TAX = {**_AUTOMATIC_TAX, "provider": None, "status": None}
_CHECKOUT_AUTOMATIC_TAX = {
    "enabled": False,
    "liability": None,
    "provider": None,
    "status": None,
}
_NO_ADDRESS = {
    "city": None,
    "country": None,
    "line1": None,
    "line2": None,
    "postal_code": None,
    "state": None,
}

_CUSTOMER = {
    "object": "customer",
    "balance": 0,
    "default_source": None,
    "discount": None,
    "invoice_settings": {
        "custom_fields": None,
        "default_payment_method": None,
        "footer": None,
        "rendering_options": None,
    },
    "metadata": {},
    "next_invoice_sequence": 1,
    "preferred_locales": [],
    "shipping": None,
    "tax_exempt": "none",
    "test_clock": None,
}

_SUBSCRIPTION: dict[str, Any] = {
    "object": "subscription",
    "application": None,
    "application_fee_percent": None,
    "automatic_tax": _AUTOMATIC_TAX,
    "billing_cycle_anchor_config": None,
    "billing_mode": {"flexible": None, "type": "classic"},
    "billing_schedules": [],
    "billing_thresholds": None,
    "collection_method": "charge_automatically",
    "customer_account": None,
    "days_until_due": None,
    "default_payment_method": None,
    "default_source": None,
    "default_tax_rates": [],
    "description": None,
    "invoice_settings": {
        "account_tax_ids": None,
        "custom_fields": None,
        "description": None,
        "footer": None,
        "issuer": {"type": "self"},
    },
    "managed_payments": {"enabled": False},
    "metadata": {},
    "next_pending_invoice_item_invoice": None,
    "on_behalf_of": None,
    "pause_collection": None,
    "payment_settings": {
        "payment_method_options": None,
        "payment_method_types": None,
        "save_default_payment_method": "off",
    },
    "pending_invoice_item_interval": None,
    "pending_setup_intent": None,
    "pending_update": None,
    "schedule": None,
    "test_clock": None,
    "transfer_data": None,
    "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
}

_INVOICE: dict[str, Any] = {
    "object": "invoice",
    "account_country": "US",
    "account_name": "Stripe Sync Demo",
    "account_tax_ids": None,
    "amount_overpaid": 0,
    "amount_shipping": 0,
    "application": None,
    "attempted": True,
    "auto_advance": False,
    "automatic_tax": _INVOICE_AUTOMATIC_TAX,
    "automatically_finalizes_at": None,
    "collection_method": "charge_automatically",
    "custom_fields": None,
    "customer_account": None,
    "customer_address": None,
    "customer_phone": None,
    "customer_shipping": None,
    "customer_tax_exempt": "none",
    "customer_tax_ids": [],
    "default_payment_method": None,
    "default_source": None,
    "default_tax_rates": [],
    "description": None,
    "due_date": None,
    "ending_balance": 0,
    "footer": None,
    "from_invoice": None,
    "last_finalization_error": None,
    "latest_revision": None,
    "metadata": {},
    "next_payment_attempt": None,
    "on_behalf_of": None,
    "payment_settings": {
        "default_mandate": None,
        "payment_method_options": None,
        "payment_method_types": None,
    },
    "post_payment_credit_notes_amount": 0,
    "pre_payment_credit_notes_amount": 0,
    "receipt_number": None,
    "rendering": None,
    "shipping_cost": None,
    "shipping_details": None,
    "starting_balance": 0,
    "statement_descriptor": None,
    "test_clock": None,
    "total_discount_amounts": [],
    "webhooks_delivered_at": None,
}
# What 2025-03-31.basil removed from invoices (payments moved to invoice payments), or renamed.
_INVOICE_BEFORE_BASIL: dict[str, Any] = {
    "application_fee_amount": None,
    "paid_out_of_band": False,
    "tax": None,
    "total_tax_amounts": [],
    "transfer_data": None,
}
_INVOICE_SINCE_BASIL: dict[str, Any] = {"total_pretax_credit_amounts": [], "total_taxes": []}

_CHARGE: dict[str, Any] = {
    "object": "charge",
    "application": None,
    "application_fee": None,
    "application_fee_amount": None,
    "calculated_statement_descriptor": "STRIPE SYNC DEMO",
    "disputed": False,
    "failure_balance_transaction": None,
    "fraud_details": {},
    "metadata": {},
    "on_behalf_of": None,
    "receipt_number": None,
    "review": None,
    "shipping": None,
    "source_transfer": None,
    "statement_descriptor": None,
    "statement_descriptor_suffix": None,
    "transfer_data": None,
    "transfer_group": None,
}

_CHECKOUT_SESSION = {
    "object": "checkout.session",
    "adaptive_pricing": {"enabled": False},
    "after_expiration": None,
    "allow_promotion_codes": None,
    "automatic_tax": _CHECKOUT_AUTOMATIC_TAX,
    "billing_address_collection": None,
    "cancel_url": "https://example.com/cancel",
    "client_reference_id": None,
    "client_secret": None,
    "collected_information": None,
    "consent": None,
    "consent_collection": None,
    "currency_conversion": None,
    "custom_fields": [],
    "custom_text": {
        "after_submit": None,
        "shipping_address": None,
        "submit": None,
        "terms_of_service_acceptance": None,
    },
    "customer_account": None,
    "customer_creation": "always",
    "discounts": [],
    "integration_identifier": None,
    "invoice_creation": None,
    "locale": None,
    "managed_payments": {"enabled": False},
    "metadata": {},
    "origin_context": None,
    "payment_link": None,
    "payment_method_collection": "always",
    "payment_method_configuration_details": None,
    "payment_method_options": {},
    "payment_method_types": ["card"],
    "permissions": None,
    "phone_number_collection": {"enabled": False},
    "recovered_from": None,
    "saved_payment_method_options": None,
    "setup_intent": None,
    "shipping_address_collection": None,
    "shipping_cost": None,
    "shipping_options": [],
    "submit_type": None,
    "success_url": "https://example.com/success?session_id={CHECKOUT_SESSION_ID}",
    "tax_id_collection": {"enabled": False, "required": "never"},
    "ui_mode": "hosted",
    "wallet_options": None,
}


def render_customer(c: dict[str, Any], cat: Catalog, shape: Shape) -> dict[str, Any]:
    """A customer in Stripe's shape; a discount applied to the customer shows as `discount`."""
    out = {**_CUSTOMER, **c}
    out["discount"] = render_discount(c.get("discount"), cat, shape, c["id"], None)
    return out


def render_discount(
    d: dict[str, Any] | None, cat: Catalog, shape: Shape, customer: str, sub: str | None
) -> dict | None:
    """A discount (a redeemed coupon): the coupon is auto-expanded as `coupon` before clover,
    and an id in `source.coupon` since (expandable, Stripe no longer inlines it)."""
    if d is None:
        return None
    out: dict[str, Any] = {
        "id": d["id"],
        "object": "discount",
        "checkout_session": None,
        "customer": customer,
        "customer_account": None,
        "end": d["end"],
        "invoice": None,
        "invoice_item": None,
        "promotion_code": None,
        "start": d["start"],
        "subscription": sub,
        "subscription_item": None,
    }
    if shape.clover:
        out["source"] = {"coupon": d["coupon"], "type": "coupon"}
    else:
        out["coupon"] = cat.inline("coupons", d["coupon"])
    return out


def render_subscription_items(c: dict[str, Any], cat: Catalog, shape: Shape) -> list[dict]:
    """Every item of a subscription, in creation order (what /v1/subscription_items pages)."""
    sub_id = c["id"]
    start, end = c["period"]
    items = []
    for si, price_id, quantity, created in c["items"]:
        item = {
            "id": si,
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": created,
            "discounts": [],
            "metadata": {},
            "plan": cat.inline("plans", price_id),
            "price": cat.inline("prices", price_id),
            "subscription": sub_id,
            "tax_rates": [],
        }
        if quantity is not None:
            item["quantity"] = quantity
        if shape.basil:
            item["current_period_start"] = start
            item["current_period_end"] = end
        items.append(item)
    return items


def render_subscription(c: dict[str, Any], cat: Catalog, shape: Shape) -> dict[str, Any]:
    """A subscription; current_period_* sits on items, or on the subscription before basil.
    `discounts` lists discount ids (expandable); before basil `discount` also showed the
    subscription's discount in full."""
    sub_id = c["id"]
    start, end = c["period"]
    items = render_subscription_items(c, cat, shape)
    out = {**_SUBSCRIPTION, **c}
    del out["period"]
    # Like every list Stripe embeds, `items` holds the first EMBEDDED_ITEMS only; has_more then
    # says /v1/subscription_items (the url) has the rest.
    out["items"] = {
        "object": "list",
        "data": items[:EMBEDDED_ITEMS],
        "has_more": len(items) > EMBEDDED_ITEMS,
        "total_count": len(items),
        "url": f"/v1/subscription_items?subscription={sub_id}",
    }
    out.pop("discount")  # the stored record's: shown in full only before basil
    if not shape.basil:
        out["discount"] = render_discount(c["discount"], cat, shape, c["customer"], sub_id)
    out["discounts"] = [c["discount"]["id"]] if c["discount"] else []
    out["cancellation_details"] = {
        "comment": None,
        "feedback": None,
        "reason": "cancellation_requested" if c["canceled_at"] else None,
    }
    if not shape.basil:
        out["current_period_start"] = start
        out["current_period_end"] = end
    return out


def render_line(line: list, inv: dict[str, Any], cat: Catalog, shape: Shape) -> dict[str, Any]:
    """One invoice line item."""
    il, price_id, quantity, amount, start, end, si = line
    price = cat.prices[price_id]
    out = {
        "id": il,
        "object": "line_item",
        "amount": amount,
        "currency": inv["currency"],
        "description": f"{quantity or 0} × {price['nickname']}",
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": inv["id"],
        "livemode": inv["livemode"],
        "metadata": {},
        "period": {"start": start, "end": end},
        "quantity": quantity,
        "subscription": inv["subscription"],
    }
    if not shape.basil:
        out.update(
            plan=cat.inline("plans", price_id, optional=True),
            price=cat.inline("prices", price_id),
            proration=False,
            proration_details={"credited_items": None},
            subscription_item=si,
            tax_amounts=[],
            tax_rates=[],
            type="subscription",
        )
    else:
        out["parent"] = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": inv["subscription"],
                "subscription_item": si,
            },
        }
        out["pricing"] = {
            "price_details": {"price": price_id, "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price["unit_amount_decimal"],
        }
        out["pretax_credit_amounts"] = []
        out["quantity_decimal"] = None if quantity is None else str(quantity)
        out["subtotal"] = amount
        out["taxes"] = []
    return out


def render_invoice_lines(c: dict[str, Any], cat: Catalog, shape: Shape) -> list[dict]:
    """Every line of an invoice (what /v1/invoices/{id}/lines pages)."""
    return [render_line(line, c, cat, shape) for line in c["lines"]]


def render_invoice(c: dict[str, Any], cat: Catalog, shape: Shape) -> dict[str, Any]:
    """An invoice; the subscription sits under parent.subscription_details since basil."""
    out = {**_INVOICE, **(_INVOICE_SINCE_BASIL if shape.basil else _INVOICE_BEFORE_BASIL), **c}
    lines = render_invoice_lines(c, cat, shape)
    out["lines"] = {
        "object": "list",
        "data": lines[:EMBEDDED_ITEMS],
        "has_more": len(lines) > EMBEDDED_ITEMS,
        "total_count": len(lines),
        "url": f"/v1/invoices/{c['id']}/lines",
    }
    paid = c["status"] == "paid"
    out.update(
        amount_due=c["total"],
        amount_remaining=0 if paid else c["total"] - c["amount_paid"],
        effective_at=c["finalized_at"],
        subtotal_excluding_tax=c["subtotal"],
        total_excluding_tax=c["total"],
        status_transitions={
            "finalized_at": c["finalized_at"],
            "marked_uncollectible_at": None,
            "paid_at": c["paid_at"],
            "voided_at": c["voided_at"],
        },
        hosted_invoice_url=f"https://invoice.stripe.com/i/{c['id']}",
        invoice_pdf=f"https://pay.stripe.com/invoice/{c['id']}/pdf",
        discounts=[c["discount"]["id"]] if c.get("discount") else [],
        total_discount_amounts=[
            {"amount": c["subtotal"] - c["total"], "discount": c["discount"]["id"]}
        ]
        if c.get("discount")
        else [],
        issuer={"type": "self"},
    )
    for key in ("finalized_at", "paid_at", "voided_at"):
        del out[key]
    out.pop("discount", None)
    if not shape.basil:
        out["paid"] = paid
        out["discount"] = render_discount(
            c.get("discount"), cat, shape, c["customer"], c["subscription"]
        )
        return out
    sub = out.pop("subscription")
    out.pop("charge")
    out.pop("payment_intent")
    out["parent"] = (
        None
        if sub is None
        else {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": sub},
        }
    )
    return out


def render_charge(c: dict[str, Any], cat: Catalog, shape: Shape) -> dict[str, Any]:
    """A card charge, succeeded, failed or (partly) refunded."""
    ok = c["status"] == "succeeded"
    out = {**_CHARGE, **c}
    out.update(
        amount_captured=c["amount"] if ok else 0,
        captured=ok,
        paid=ok,
        balance_transaction=f"txn_{c['id'][3:]}" if ok else None,
        billing_details={
            "address": None,
            "email": c["receipt_email"],
            "name": c["name"],
            "phone": None,
            "tax_id": None,
        },
        outcome={
            "advice_code": None if ok else "try_again_later",
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network" if ok else "declined_by_network",
            "reason": None if ok else "generic_decline",
            "risk_level": "normal",
            "seller_message": "Payment complete."
            if ok
            else "The bank did not return any further details with this decline.",
            "type": "authorized" if ok else "issuer_declined",
        },
        payment_method=f"pm_{c['id'][3:]}",
        payment_method_details={
            "card": {
                "amount_authorized": c["amount"] if ok else None,
                "authorization_code": None,
                "brand": c["brand"],
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": None,
                    "cvc_check": "pass",
                },
                "country": "US",
                "exp_month": 12,
                "exp_year": 2030,
                "extended_authorization": {"status": "disabled"},
                "fingerprint": f"fp{c['last4']}{c['brand'][:4]}",
                "funding": "credit",
                "incremental_authorization": {"status": "unavailable"},
                "installments": None,
                "last4": c["last4"],
                "mandate": None,
                "multicapture": {"status": "unavailable"},
                "network": c["brand"],
                "network_token": {"used": False},
                "network_transaction_id": None,
                "overcapture": {"maximum_amount_capturable": c["amount"], "status": "unavailable"},
                "regulated_status": "unregulated",
                "three_d_secure": None,
                "transaction_link_id": None,
                "wallet": None,
            },
            "type": "card",
        },
        receipt_url=f"https://pay.stripe.com/receipts/{c['id']}",
        refunds=_refunds(c),
        source=None,
    )
    del out["name"], out["brand"], out["last4"]
    if shape.basil:
        out.pop("invoice")
    return out


def _refunds(c: dict[str, Any]) -> dict[str, Any]:
    """The charge's refunds list: one full refund when it was refunded."""
    data = []
    if c["amount_refunded"]:
        data.append(
            {
                "id": f"re_{c['id'][3:]}",
                "object": "refund",
                "amount": c["amount_refunded"],
                "balance_transaction": None,
                "charge": c["id"],
                "created": c["created"],
                "currency": c["currency"],
                "customer": c["customer"],
                "customer_account": None,
                "destination_details": None,
                "metadata": {},
                "payment_intent": c["payment_intent"],
                "payment_method": f"pm_{c['id'][3:]}",
                "reason": "requested_by_customer",
                "receipt_number": None,
                "source_transfer_reversal": None,
                "status": "succeeded",
                "transfer_reversal": None,
            }
        )
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "url": f"/v1/charges/{c['id']}/refunds",
    }


def render_checkout_session(c: dict[str, Any], cat: Catalog, shape: Shape) -> dict[str, Any]:
    """A checkout session."""
    out = {**_CHECKOUT_SESSION, **c}
    out["customer_details"] = (
        None
        if c["customer_email"] is None
        else {
            "address": None,
            "business_name": None,
            "email": c["customer_email"],
            "individual_name": None,
            "name": None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
    )
    out["total_details"] = {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
    out["amount_subtotal"] = c["amount_total"]
    out["url"] = f"https://checkout.stripe.com/c/pay/{c['id']}" if c["status"] == "open" else None
    return out


def _identity(c: dict[str, Any], cat: Catalog, shape: Shape) -> dict[str, Any]:
    return c


def _webhook_endpoint(c: dict[str, Any], cat: Catalog, shape: Shape) -> dict[str, Any]:
    # Stripe shows the secret only in the create response.
    return {k: v for k, v in c.items() if k != "secret"}


RENDERERS: dict[str, Callable[[dict[str, Any], Catalog, Shape], dict[str, Any]]] = {
    "customers": render_customer,
    "subscriptions": render_subscription,
    "invoices": render_invoice,
    "charges": render_charge,
    "checkout_sessions": render_checkout_session,
    "prices": _identity,
    "products": _identity,
    "coupons": _identity,
    "webhook_endpoints": _webhook_endpoint,
}

OBJECT_NAMES = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "charges": "charge",
    "checkout_sessions": "checkout.session",
    "prices": "price",
    "products": "product",
    "coupons": "coupon",
    "events": "event",
    "plans": "plan",
    "webhook_endpoints": "webhook_endpoint",
    "subscription_items": "subscription_item",
}


def render(kind: str, compact: dict[str, Any], cat: Catalog, shape: Shape) -> dict[str, Any]:
    """The full object of a stored record."""
    return RENDERERS[kind](compact, cat, shape)


def deleted_stub(kind: str, obj_id: str) -> dict[str, Any]:
    """What Stripe returns when retrieving a deleted object."""
    return {"id": obj_id, "object": OBJECT_NAMES[kind], "deleted": True}
