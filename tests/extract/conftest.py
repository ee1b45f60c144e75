"""Helpers for extractor tests: read stripe_raw back and compare it with the emulator's truth."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import sql

from orchestration.emulator import Emulator
from orchestration.extract.objects import OBJECTS

TABLES = [spec.table for spec in OBJECTS]
# The figure is 20k (about 30 s here), which CI runs; a few thousand keeps the local
# suite quick. STRIPE_SYNC_TEST_CUSTOMERS overrides both.
TEST_CUSTOMERS = int(
    os.environ.get("STRIPE_SYNC_TEST_CUSTOMERS") or (20_000 if os.environ.get("CI") else 2_000)
)


def unexpanded(table: str, data: dict[str, Any]) -> dict[str, Any]:
    """The emulator's truth is unexpanded; we expand discounts and their coupons (for MRR)."""
    if table == "subscriptions" and data.get("discounts"):
        data = {
            **data,
            "discounts": [d["id"] if isinstance(d, dict) else d for d in data["discounts"]],
        }
    coupon = ((data.get("discount") or {}).get("source") or {}).get("coupon")
    if table == "customers" and isinstance(coupon, dict):
        source = {**data["discount"]["source"], "coupon": coupon["id"]}
        data = {**data, "discount": {**data["discount"], "source": source}}
    return data


def raw_rows(database_url: str, table: str, livemode: bool = False) -> dict[str, tuple[dict, bool]]:
    """id → (data, is_deleted) of one raw table and mode."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            sql.SQL("select id, data, is_deleted from stripe_raw.{} where livemode = %s").format(
                sql.Identifier(table)
            ),
            (livemode,),
        ).fetchall()
    return {row[0]: (unexpanded(table, row[1]), row[2]) for row in rows}


def assert_matches_emulator(database_url: str, emu: Any, livemode: bool = False) -> None:
    """Every table: the non-deleted rows equal the emulator's objects (JSON equality), and every
    row flagged deleted is deleted in the emulator. Subscriptions compare with every item
    embedded: Stripe embeds 10, and the extractor completes the rest (extract/items.py)."""
    for table in TABLES:
        rows = raw_rows(database_url, table, livemode)
        live = {i: data for i, (data, deleted) in rows.items() if not deleted}
        truth = emu.objects(table, livemode=livemode, all_items=True)
        missing, extra = truth.keys() - live.keys(), live.keys() - truth.keys()
        assert not missing and not extra, f"{table}: {len(missing)} missing, {len(extra)} extra"
        differing = [i for i in truth if truth[i] != live[i]]
        assert not differing, f"{table}: {len(differing)} differ, e.g. {differing[0]}"
        flagged = {i for i, (_, deleted) in rows.items() if deleted}
        assert flagged <= emu.deleted_ids(table, livemode=livemode), table


def duplicate_count(database_url: str) -> int:
    """Primary keys make duplicates impossible; counted anyway, per table, as the issue asks."""
    total = 0
    with psycopg.connect(database_url) as conn:
        for table in [*TABLES, "events"]:
            query = sql.SQL("select count(*) - count(distinct id) from stripe_raw.{}").format(
                sql.Identifier(table)
            )
            total += conn.execute(query).fetchone()[0]
    return total


def emulator_stats(emu: Emulator) -> dict[str, Any]:
    """The emulator's request counters as a dict."""
    return emu.stats()


def list_requests(emu: Emulator) -> dict[str, int]:
    """Requests so far per object list route (not events, not the account)."""
    return {
        route: n
        for route, n in emulator_stats(emu)["by_route"].items()
        if route.startswith("GET /v1/")
        and ":id" not in route
        and "/events" not in route
        and "/account" not in route
    }


def assert_only_preflight_listed(before: dict[str, int], after: dict[str, int]) -> None:
    """Between two snapshots of list_requests, no list route was called more than once (the
    permission preflight's limit=1 call), except checkout sessions: created without an event,
    their list's head is read down to the first stored one. Nothing was re-listed."""
    delta = {route: after[route] - before.get(route, 0) for route in after}
    heads = {"GET /v1/checkout/sessions": 2}
    assert all(n <= heads.get(route, 1) for route, n in delta.items()), delta
