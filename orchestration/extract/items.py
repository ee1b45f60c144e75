"""Completes subscriptions' `items` past the 10 that Stripe embeds, from /v1/subscription_items.

Stripe embeds at most 10 items in a subscription (`has_more` is then true); stored as sent, MRR
would miss the others without any error. What is stored instead: `items.data` holds every item
(Stripe's embedded ones first, in their order, as the contract's "first item" is item 1; then
the rest in the list's order), `has_more` is false and `total_count` is the number of items;
`object` and `url` stay as Stripe sent them. So a stored subscription is what Stripe would send if
it embedded every item, and readers need no second table.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from orchestration.extract import loader
from orchestration.extract.client import NotFoundError, StripeApi

log = logging.getLogger("stripe_sync.extract")
ITEMS_PATH = "/v1/subscription_items"
PAGE_SIZE = 100  # Stripe's maximum
THREADS = 16
BATCH = 100  # stored rows completed per transaction


def is_incomplete(obj: dict[str, Any]) -> bool:
    """True for a subscription whose `items` says more items exist than it embeds."""
    items = obj.get("items")
    return isinstance(items, dict) and items.get("has_more") is True


def all_items(
    client: StripeApi, subscription_id: str, embedded: dict[str, Any]
) -> dict[str, Any] | None:
    """The subscription's `items` list with every item (see the module docstring), from the
    embedded list and /v1/subscription_items; None when Stripe no longer knows the subscription."""
    pages = client.list_pages(ITEMS_PATH, subscription=subscription_id, limit=PAGE_SIZE)
    try:
        listed = [item for page in pages for item in page.objects]
    except NotFoundError:
        return None
    # The list is read after the embedded items: it decides which items exist, and its copies
    # are the newer ones; the embedded order comes first.
    by_id = {item["id"]: item for item in listed}
    order = [item["id"] for item in embedded.get("data") or [] if item.get("id") in by_id]
    first = set(order)
    order += [item_id for item_id in by_id if item_id not in first]
    return {
        **embedded,
        "data": [by_id[item_id] for item_id in order],
        "has_more": False,
        "total_count": len(order),
    }


def complete_rows(
    client: StripeApi, rows: list[tuple[str, loader.ObjectRow]]
) -> list[tuple[str, loader.ObjectRow]]:
    """The rows, with each subscription that embeds only part of its items completed (requests
    run concurrently). A subscription Stripe no longer knows keeps its row, flagged deleted."""
    wanted: dict[int, dict[str, Any]] = {}
    for i, (table, row) in enumerate(rows):
        if table == "subscriptions":
            obj = json.loads(row[3])
            if is_incomplete(obj):
                wanted[i] = obj
    if not wanted:
        return rows
    with ThreadPoolExecutor(min(THREADS, len(wanted))) as pool:
        found = dict(
            zip(
                wanted,
                pool.map(lambda o: all_items(client, o["id"], o["items"]), wanted.values()),
                strict=True,
            )
        )
    out = list(rows)
    for i, obj in wanted.items():
        table, (_, _, _, _, deleted, snapshot_at) = rows[i]
        items = found[i]
        if items is None:
            out[i] = (table, loader.object_row(obj, snapshot_at, deleted=True))
        else:
            out[i] = (
                table,
                loader.object_row({**obj, "items": items}, snapshot_at, deleted=deleted),
            )
    return out


def complete_stored(conn: psycopg.Connection, client: StripeApi) -> int:
    """Completes the stored subscriptions of the client's mode that still embed part of their
    items; returns how many. The backfill stores list pages as Stripe sent them (Postgres splits
    them), so it leaves such rows; every sync runs this pass, so rows left by a killed run, or
    stored before this pass existed, are completed by the next. A partial index makes finding
    none cheap."""
    done, after = 0, ""
    while True:
        batch = conn.execute(
            """
            select id, data -> 'items', snapshot_at from stripe_raw.subscriptions
            where (data -> 'items' ->> 'has_more') = 'true'
                and livemode = %s and not is_deleted and id > %s
            order by id limit %s
            """,
            (client.livemode, after, BATCH),
        ).fetchall()
        if not batch:
            break
        with ThreadPoolExecutor(min(THREADS, len(batch))) as pool:
            found = list(pool.map(lambda r: all_items(client, r[0], r[1]), batch))
        with conn.transaction():
            for (sub_id, _, snapshot_at), items in zip(batch, found, strict=True):
                # Only over the snapshot it was read for: a newer one written meanwhile (by
                # apply_events, complete already) stays.
                conn.execute(
                    loader.read_sql("complete_items"),
                    {
                        "id": sub_id,
                        "snapshot_at": snapshot_at,
                        "items": Jsonb(items) if items is not None else None,
                        "gone": items is None,
                    },
                )
        done += len(batch)
        after = batch[-1][0]
    if done:
        log.info("completed the items of %s subscriptions with more than 10", done)
    return done
