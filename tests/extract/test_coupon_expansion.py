"""Coupon terms through the real SDK and the emulator: what is expanded, and when an event's copy
is re-read, with and without Coupons: Read."""

from __future__ import annotations

from orchestration.emulator import PERMISSIONS
from orchestration.extract.client import StripeApi
from orchestration.extract.objects import BY_TABLE

CUSTOMERS, SUBSCRIPTIONS = BY_TABLE["customers"], BY_TABLE["subscriptions"]


def _client(emu, without: set[str] = frozenset()) -> StripeApi:
    key = emu.restricted_key(set(PERMISSIONS) - set(without)) if without else emu.test_key
    return StripeApi(key, emu.url, max_rps=1000)


def _event_copy(emu, client: StripeApi, spec) -> dict:
    """A customer with a discount, or a discounted subscription, as an event carries it (the
    unexpanded retrieve)."""
    table = spec.table
    obj_id = next(
        i
        for i, o in emu.objects(table).items()
        if (o.get("discount") if table == "customers" else o.get("discounts"))
    )
    return client.get(spec.retrieve_path.format(id=obj_id)).data


def test_with_coupons_read_coupons_are_expanded_and_ids_re_read(emulator_factory) -> None:
    emu = emulator_factory(customers=200, seed=42)
    client = _client(emu)
    assert SUBSCRIPTIONS.expand_for(client) == ["discounts.source.coupon"]
    assert CUSTOMERS.expand_for(client) == ["discount.source.coupon"]
    for spec in (CUSTOMERS, SUBSCRIPTIONS):
        copy = _event_copy(emu, client, spec)
        assert spec.lacks_coupon_terms(copy, client)
        path = spec.retrieve_path.format(id=copy["id"])
        expanded = client.get(path, expand=spec.expand_for(client)).data
        assert not spec.lacks_coupon_terms(expanded, client)


def test_without_coupons_read_only_discount_ids_are_worth_a_re_read(emulator_factory) -> None:
    emu = emulator_factory(customers=200, seed=42)
    client = _client(emu, {"Coupons: Read"})
    assert not client.coupons_readable
    assert SUBSCRIPTIONS.expand_for(client) == ["discounts"]
    assert CUSTOMERS.expand_for(client) == []
    # A subscription's discounts come as ids: a re-read brings their start and end.
    assert SUBSCRIPTIONS.lacks_coupon_terms(_event_copy(emu, client, SUBSCRIPTIONS), client)
    # A customer's discount names its coupon by id, and a re-read could not do better.
    assert not CUSTOMERS.lacks_coupon_terms(_event_copy(emu, client, CUSTOMERS), client)
