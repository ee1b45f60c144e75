"""Incremental sync from the events API, and `apply_events`: the one code path that turns events
(read from /v1/events or received as webhooks) into rows."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from orchestration.core.modes import SyncMode
from orchestration.core.rows import one_row
from orchestration.extract import items, loader, state
from orchestration.extract.client import Response, StripeApi
from orchestration.extract.objects import BY_STRIPE_OBJECT, BY_TABLE, OBJECTS, ObjectSpec

EVENT_RETENTION = timedelta(days=30)  # Stripe keeps events for 30 days
# Once Stripe's clock is this far past the cursor's second, no event of that second can still
# appear, and the same-second sweep (see _same_second_as_cursor) is skipped.
SETTLED = 5
REFETCH_THREADS = 16
PAGE_SIZE = 100
REFRESH_BATCH = 200  # customers refreshed per transaction (see refresh_stored_customers)
# Writers of one object (the sync's replay, each webhook batch) serialize on an advisory lock per
# object in this namespace (two-int lock space: it never meets the sync's bigint locks or the
# receiver's per-event namespace).
OBJECT_LOCK_NAMESPACE = 0x0B1E
# A re-fetch whose Date second is not past its event's second may predate a later change made in
# that same second: it is read once more, this long after.
REREAD_DELAY = 1.0


@dataclass
class ApplyResult:
    """What one call of apply_events did."""

    events: int = 0  # events given
    new_events: int = 0  # events not stored before
    written: Counter[str] = field(default_factory=Counter)  # rows written per table
    refetched: int = 0  # objects re-read from Stripe (other API version, or ids to expand)
    deleted: int = 0  # objects marked deleted
    completed_customers: int = 0  # new-only mode: customers brought in whole on first touch
    refreshed_customers: int = 0  # new-only mode past the retention: stored ones read again


@dataclass(frozen=True)
class Touch:
    """The newest state of one object among a batch of events."""

    spec: ObjectSpec
    object_id: str
    event: dict[str, Any]
    deleted: bool
    ambiguous: bool = False  # another event of this object has the same `created` second


def event_time(event: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(event.get("created") or 0), UTC)


def newest_event(client: StripeApi) -> tuple[str | None, Response]:
    """The id of the newest event (None if there is none) and the response, whose server time
    is Stripe's "now"."""
    response = client.get("/v1/events", limit=1)
    data = response.data.get("data") or []
    return (data[0]["id"] if data else None), response


def start_cursor(
    conn: psycopg.Connection, client: StripeApi
) -> tuple[str | None, datetime, int | None]:
    """A new cursor at the newest event: (its id, Stripe's time, its `created` second). The other
    events of its second are stored (not applied: they predate the sync's start), so the
    same-second sweep of the next replay does not take them for events it missed."""
    response = client.get("/v1/events", limit=PAGE_SIZE)
    page = response.data.get("data") or []
    if not page:
        return None, response.server_time, None
    second = int(page[0]["created"])
    if response.server_time.timestamp() - second >= SETTLED:
        return page[0]["id"], response.server_time, second
    same = [e for e in page if int(e["created"]) == second]
    if len(same) == len(page) and response.data.get("has_more"):
        same = _events_of_second(client, second)  # a busy second: read all of it
    with conn.transaction():
        loader.insert_events(conn, [e for e in same if bool(e.get("livemode")) == client.livemode])
    return page[0]["id"], response.server_time, second


def cursor_problem(
    client: StripeApi, cursor: str | None, cursor_at: datetime | None
) -> tuple[str | None, int | None]:
    """Why events cannot be replayed from `cursor` (None when they can), and the cursor event's
    `created` second. cursor_at is Stripe's time up to which events were read; past the 30-day
    retention some may be gone. Stripe's clock comes from responses, never the local one."""
    if cursor is None:
        return None, None
    response = client.retrieve(f"/v1/events/{quote(cursor, safe='')}")
    now = response.server_time if response else newest_event(client)[1].server_time
    if cursor_at is not None and now - cursor_at > EVENT_RETENTION:
        days = (now - cursor_at).total_seconds() / 86400
        return (
            f"the events cursor is {days:.0f} days old, past Stripe's 30-day event retention",
            None,
        )
    if response is None:
        return "the events cursor is no longer in Stripe's event log (past its retention)", None
    return None, int(response.data["created"])


def read_events(
    client: StripeApi, cursor: str | None, since: datetime | None
) -> Iterator[tuple[list[dict[str, Any]], Response, bool]]:
    """Pages of events after `cursor`, oldest first: (events, response, drained). Stripe lists
    newest first; `ending_before` returns the page just newer than the cursor."""
    if cursor is None:
        yield from _read_events_since(client, since)
        return
    while True:
        response = client.get("/v1/events", limit=PAGE_SIZE, ending_before=cursor)
        page = response.data.get("data") or []
        drained = not response.data.get("has_more") or not page
        yield list(reversed(page)), response, drained
        if drained:
            return
        cursor = page[0]["id"]


def _read_events_since(
    client: StripeApi, since: datetime | None
) -> Iterator[tuple[list[dict[str, Any]], Response, bool]]:
    """Without a cursor (the account had no event when the sync began): every event since then,
    read newest first and replayed oldest first. Few by construction."""
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    if since is not None:
        params["created"] = {"gte": int(since.timestamp())}
    events: list[dict[str, Any]] = []
    for response in client.list_pages("/v1/events", **params):
        events += response.objects
    events.reverse()
    for start in range(0, max(len(events), 1), PAGE_SIZE):
        chunk = events[start : start + PAGE_SIZE]
        yield chunk, response, start + PAGE_SIZE >= len(events)


def coalesce(events: list[dict[str, Any]]) -> list[Touch]:
    """One Touch per object: the newest event's state (by created, then list order; the caller
    gives events oldest first), deleted if any of its events deleted it. `created` has one-second
    resolution: when the newest second holds two events of one object, which is newer rests on
    list order alone, so the Touch is flagged ambiguous and the object re-read."""
    newest: dict[tuple[str, str], tuple[tuple[int, int], dict[str, Any]]] = {}
    seconds: dict[tuple[str, str], Counter[int]] = {}
    deleted: set[tuple[str, str]] = set()
    for position, event in enumerate(events):
        for spec, object_id in _touched(event):
            key = (spec.table, object_id)
            rank = (int(event.get("created") or 0), position)
            seconds.setdefault(key, Counter())[rank[0]] += 1
            if key not in newest or rank >= newest[key][0]:
                newest[key] = (rank, event)
            if spec.delete_event and event.get("type") == spec.delete_event:
                deleted.add(key)
    return [
        Touch(BY_TABLE[key[0]], key[1], event, key in deleted, seconds[key][rank[0]] > 1)
        for key, (rank, event) in newest.items()
    ]


def _flag_same_second_as_stored(conn: psycopg.Connection, touches: list[Touch]) -> list[Touch]:
    """An event in the same second as the stored snapshot may be older or newer than it: flag it
    ambiguous (re-read) rather than trust either."""
    stored: dict[tuple[str, str], datetime] = {}
    for table in {t.spec.table for t in touches}:
        ids = [t.object_id for t in touches if t.spec.table == table]
        query = sql.SQL("select id, snapshot_at from stripe_raw.{} where id = any(%s)").format(
            sql.Identifier(table)
        )
        stored.update({(table, i): at for i, at in conn.execute(query, (ids,))})
    return [
        replace(t, ambiguous=True)
        if stored.get((t.spec.table, t.object_id)) == event_time(t.event)
        else t
        for t in touches
    ]


def _touched(event: dict[str, Any]) -> list[tuple[ObjectSpec, str]]:
    """The synced objects an event concerns. A discount event's object is a discount: it changes
    the customer's (and subscription's) record, which are then re-read."""
    obj = (event.get("data") or {}).get("object") or {}
    spec = BY_STRIPE_OBJECT.get(obj.get("object", ""))
    if spec is not None and obj.get("id"):
        return [(spec, obj["id"])]
    if obj.get("object") == "discount":
        touched = []
        if isinstance(obj.get("customer"), str):
            touched.append((BY_TABLE["customers"], obj["customer"]))
        if isinstance(obj.get("subscription"), str):
            touched.append((BY_TABLE["subscriptions"], obj["subscription"]))
        return touched
    return []


def _needs_refetch(touch: Touch, client: StripeApi) -> bool:
    """Use the event's own object only when it has our shape: same API version, same type, and
    its discounts' coupon terms inlined (event payloads never carry expansions)."""
    if touch.deleted:
        return False  # gone: the event's copy is the last state there will be
    if touch.ambiguous:
        return True
    obj = touch.event["data"]["object"]
    if touch.event.get("api_version") != client.api_version or obj.get("id") != touch.object_id:
        return True
    return touch.spec.lacks_coupon_terms(obj, client)


def _refetch(client: StripeApi, touch: Touch) -> Response | None:
    # Ids come from event payloads: quoted, so `../account` names no other resource.
    path = touch.spec.retrieve_path.format(id=quote(touch.object_id, safe=""))
    expand = touch.spec.expand_for(client)
    params = {"expand": expand} if expand else {}
    return client.retrieve(path, **params)


def _sync_mode(conn: psycopg.Connection, livemode: bool) -> str | None:
    row = conn.execute(
        "select mode from stripe_raw.sync_state where object = 'events' and livemode = %s",
        (livemode,),
    ).fetchone()
    return row[0] if row else None


def apply_events(
    conn: psycopg.Connection,
    client: StripeApi,
    events: list[dict[str, Any]],
    *,
    advance_cursor: bool = False,
) -> ApplyResult:
    """Applies events of the client's mode: stores each event once, coalesces per object, and
    writes the newest state of each object (the event's own copy when it is in our pinned API
    version, else a re-fetch), never overwriting a newer snapshot. With advance_cursor (events
    API only; `events` oldest first) the cursor moves to the last event in the same transaction.
    Webhooks call this too, without advance_cursor: their order is not guaranteed. On an
    autocommit connection it commits; otherwise its transaction is a savepoint in the caller's.

    Each touched object stays locked (lock_objects) from the read of its stored stamp through
    the re-fetch to the upsert, until the outermost transaction ends: a re-fetch read before
    another writer's change can then never be committed after it."""
    newest = events[-1] if events else None
    events = [e for e in events if bool(e.get("livemode")) == client.livemode]
    result = ApplyResult(events=len(events))
    touches = coalesce(events)
    with conn.transaction():
        new_only = _sync_mode(conn, client.livemode) == SyncMode.new_only
        keys = [(t.spec.table, t.object_id) for t in touches]
        if new_only:  # customers completed on first touch are written too
            keys += [("customers", c) for c in map(_customer_of, touches) if c]
        lock_objects(conn, keys)
        touches = _flag_same_second_as_stored(conn, touches)
        rows = _rows_for(client, touches, result)
        if new_only:
            rows += _complete_customers(conn, client, touches, result)
        rows = items.complete_rows(client, rows)
        result.new_events = loader.insert_events(conn, events)
        # Tables in OBJECTS order (and ids sorted inside upsert_objects): a sync and the webhook
        # receiver then lock rows in the same order and cannot deadlock each other.
        touched = {row[0] for row in rows}
        for table in (spec.table for spec in OBJECTS if spec.table in touched):
            table_rows = [row[1] for row in rows if row[0] == table]
            result.written[table] += loader.upsert_objects(conn, table, table_rows)
        if advance_cursor and newest is not None:
            conn.execute(
                loader.read_sql("advance_cursor"),
                {
                    "cursor": newest["id"],
                    "cursor_at": event_time(newest),
                    "livemode": client.livemode,
                },
            )
    return result


def lock_objects(conn: psycopg.Connection, keys: list[tuple[str, str]]) -> None:
    """Takes the advisory transaction lock of each (table, id), in key order so that writers
    sharing objects cannot deadlock; held until the outermost transaction ends. Re-entrant: a
    caller may lock a whole batch first, then apply it in parts."""
    names = sorted({f"{table}/{object_id}" for table, object_id in keys})
    if names:
        conn.execute(
            "select pg_advisory_xact_lock(%s, k) from"
            " (select distinct hashtext(name) as k from unnest(%s::text[]) as name order by k)"
            " as keys",
            (OBJECT_LOCK_NAMESPACE, names),
        )


def _fetch(client: StripeApi, touches: list[Touch], which: list[int]) -> dict[int, Response | None]:
    with ThreadPoolExecutor(REFETCH_THREADS) as pool:
        answers = pool.map(lambda i: _refetch(client, touches[i]), which)
        return dict(zip(which, answers, strict=True))


def _rows_for(
    client: StripeApi, touches: list[Touch], result: ApplyResult
) -> list[tuple[str, loader.ObjectRow]]:
    """The staged row of each touched object; re-fetches run concurrently."""
    stale = [i for i, t in enumerate(touches) if _needs_refetch(t, client)]
    fetched = _fetch(client, touches, stale)
    # Stamped with its event's second (below), an answer read within that second may miss a
    # later change of the same second, whose writer would then find an equal stamp and re-read
    # too; reading once more after the second has passed makes the stored state newer anyway.
    unsettled = [
        i
        for i, response in fetched.items()
        if response is not None
        and int(response.server_time.timestamp()) <= int(touches[i].event.get("created") or 0)
    ]
    if unsettled:
        time.sleep(REREAD_DELAY)
        fetched.update(_fetch(client, touches, unsettled))
    rows = []
    for i, touch in enumerate(touches):
        event_obj = touch.event["data"]["object"]
        if i not in fetched:
            obj = event_obj if event_obj.get("id") == touch.object_id else None
            if obj is None:
                continue  # a discount event that deleted its customer: the customer event says it
            rows.append(
                (
                    touch.spec.table,
                    loader.object_row(obj, event_time(touch.event), deleted=touch.deleted),
                )
            )
            result.deleted += touch.deleted
            continue
        result.refetched += 1
        response = fetched[i]
        if response is not None:
            # Read after the event existed, so at least as new as it, whatever the Date header
            # says: Stripe's Date can lag its event clock by a second or more, and a stamp older
            # than the stored one would make the guard drop this newer state for good.
            snapshot_at = max(response.server_time, event_time(touch.event))
            rows.append((touch.spec.table, loader.object_row(response.data, snapshot_at)))
        elif event_obj.get("id") == touch.object_id:
            # Gone from Stripe: keep its last known state, flagged deleted.
            rows.append(
                (
                    touch.spec.table,
                    loader.object_row(event_obj, event_time(touch.event), deleted=True),
                )
            )
            result.deleted += 1
    return rows


def _customer_of(touch: Touch) -> str | None:
    if touch.spec.table == "customers":
        return None if touch.deleted else touch.object_id
    customer = touch.event["data"]["object"].get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer if isinstance(customer, str) else None


def _complete_customers(
    conn: psycopg.Connection, client: StripeApi, touches: list[Touch], result: ApplyResult
) -> list[tuple[str, loader.ObjectRow]]:
    """New-only mode: a customer first touched by an event comes in whole (record, every
    subscription, latest charge), so its fields are complete, not just the changed object."""
    customers = {c for c in map(_customer_of, touches) if c}
    if not customers:
        return []
    known = {
        row[0]
        for row in conn.execute(
            "select id from stripe_raw.customers where id = any(%s)", (list(customers),)
        )
    }
    missing = sorted(customers - known)
    with ThreadPoolExecutor(REFETCH_THREADS) as pool:
        parts = list(pool.map(lambda c: _whole_customer(client, c), missing))
    result.completed_customers += len(missing)
    return [row for part in parts for row in part or []]


def _whole_customer(
    client: StripeApi, customer_id: str
) -> list[tuple[str, loader.ObjectRow]] | None:
    """A customer's record, every subscription and latest charge, as rows (subscriptions may
    still embed part of their items: callers complete them); None when Stripe no longer has
    the customer."""
    customer = client.retrieve(f"/v1/customers/{quote(customer_id, safe='')}")
    if customer is None:
        return None
    rows = [("customers", loader.object_row(customer.data, customer.server_time))]
    subs = BY_TABLE["subscriptions"]
    params: dict[str, Any] = {"customer": customer_id, "limit": PAGE_SIZE, **subs.list_params}
    params["expand"] = [f"data.{path}" for path in subs.expand_for(client)]
    for page in client.list_pages(subs.list_path, **params):
        rows += [("subscriptions", loader.object_row(s, page.server_time)) for s in page.objects]
    charges = client.get("/v1/charges", customer=customer_id, limit=1)
    rows += [("charges", loader.object_row(c, charges.server_time)) for c in charges.data["data"]]
    return rows


def refresh_stored_customers(
    conn: psycopg.Connection, client: StripeApi, progress: state.RefreshProgress
) -> ApplyResult:
    """New-only mode, when the events cursor has outlived Stripe's event retention: the changes
    since then cannot be replayed, and a backfill would import the history the user chose to
    skip. Instead every customer already stored is read again whole (record, every subscription,
    latest charge), those Stripe no longer returns are flagged deleted, and the cursor restarts
    at `progress`'s (taken when the refresh began; events since then replay afterwards).

    Customers go in id order, REFRESH_BATCH per transaction, each committing its rows with the
    last id done (sync_state.refresh_progress); the last one commits the new cursor instead. A
    killed refresh leaves the old, expired cursor, so the next sync resumes it."""
    total = ApplyResult()
    after = progress.get("after") or ""
    while True:
        ids = [
            row[0]
            for row in conn.execute(
                "select id from stripe_raw.customers where livemode = %s and not is_deleted"
                " and id > %s order by id limit %s",
                (client.livemode, after, REFRESH_BATCH),
            )
        ]
        with ThreadPoolExecutor(REFETCH_THREADS) as pool:
            parts = list(pool.map(lambda c: _whole_customer(client, c), ids))
        rows = items.complete_rows(client, [row for part in parts if part for row in part])
        gone = [c for c, part in zip(ids, parts, strict=True) if part is None]
        final = len(ids) < REFRESH_BATCH
        with conn.transaction():
            for table in (spec.table for spec in OBJECTS):
                table_rows = [row for name, row in rows if name == table]
                if table_rows:
                    total.written[table] += loader.upsert_objects(conn, table, table_rows)
            if gone:
                # Deletion is sticky (Stripe never reuses an id): the last state stays, flagged.
                total.deleted += conn.execute(
                    "update stripe_raw.customers set is_deleted = true, synced_at = now()"
                    " where id = any(%s) and not is_deleted",
                    (gone,),
                ).rowcount
            if final:
                state.restart_cursor(
                    conn,
                    client.livemode,
                    progress["cursor"],
                    datetime.fromisoformat(progress["cursor_at"]),
                )
            else:
                state.save_refresh(conn, client.livemode, {**progress, "after": ids[-1]})
        total.refreshed_customers += len(ids) - len(gone)
        if final:
            return total
        after = ids[-1]


def run_incremental(
    conn: psycopg.Connection,
    client: StripeApi,
    cursor: str | None,
    since: datetime | None,
    *,
    cursor_second: int | None = None,
    poll: bool = True,
) -> tuple[ApplyResult, float | None]:
    """Applies every event after `cursor`, a page per transaction (rows + cursor together).
    Returns the totals and when (time.monotonic()) Stripe answered that the log was read to its
    end: the tables are complete up to that instant."""
    total = ApplyResult()
    drained_at = None
    # Rows this sync writes from here on carry a later synced_at: poll_heads tells them apart.
    started = one_row(conn.execute("select now()"))[0]
    late = _same_second_as_cursor(conn, client, cursor, cursor_second, since)
    if late:
        _add(total, apply_events(conn, client, late))
    for events, response, drained in read_events(client, cursor, since):
        if events:
            result = apply_events(conn, client, events, advance_cursor=True)
            _add(total, result)
        if drained:
            drained_at = time.monotonic()
            _mark_read_until(conn, client.livemode, response.server_time)
    if poll:
        total.written.update(poll_heads(conn, client, stored_before=started))
    return total, drained_at


def _same_second_as_cursor(
    conn: psycopg.Connection,
    client: StripeApi,
    cursor: str | None,
    second: int | None,
    read_until: datetime | None,
) -> list[dict[str, Any]]:
    """Events created in the cursor's second that are not stored yet. `ending_before` returns
    what the list orders after the cursor; an event created later in the same second can be
    ordered before it and would be skipped for good."""
    if cursor is None:
        return []
    if second is None:
        found = client.retrieve(f"/v1/events/{quote(cursor, safe='')}")
        if found is None:
            return []
        second = int(found.data["created"])
    if read_until is not None and read_until.timestamp() - second >= SETTLED:
        return []  # the log was read well past the cursor's second: nothing can be missing
    events = _events_of_second(client, second)
    ids = [e["id"] for e in events]
    stored = {
        row[0]
        for row in conn.execute("select id from stripe_raw.events where id = any(%s)", (ids,))
    }
    return [e for e in reversed(events) if e["id"] not in stored and e["id"] != cursor]


def _events_of_second(client: StripeApi, second: int) -> list[dict[str, Any]]:
    """Every event created in one second, newest first."""
    created = {"gte": second, "lte": second}
    pages = client.list_pages("/v1/events", limit=PAGE_SIZE, created=created)
    return [event for page in pages for event in page.objects]


def poll_heads(
    conn: psycopg.Connection, client: StripeApi, *, stored_before: datetime | None = None
) -> Counter[str]:
    """Objects created without an event: the newest ones, down to the first already stored
    (before `stored_before`, when given). Skipped in new-only mode, which imports only what
    events bring."""
    written: Counter[str] = Counter()
    if _sync_mode(conn, client.livemode) == SyncMode.new_only:
        return written
    for spec in (s for s in OBJECTS if s.created_without_event):
        params: dict[str, Any] = {"limit": PAGE_SIZE, **spec.list_params}
        if expand := spec.expand_for(client):
            params["expand"] = [f"data.{path}" for path in expand]
        for response in client.list_pages(spec.list_path, **params):
            page = response.objects
            query = sql.SQL("select id, synced_at from stripe_raw.{} where id = any(%s)").format(
                sql.Identifier(spec.table)
            )
            stored: dict[str, datetime] = dict(
                conn.execute(query, ([o["id"] for o in page],)).fetchall()
            )
            known = set(stored)
            # The stop is a row stored by an earlier sync. One this sync's events just stored (a
            # new session completed) can sit above older new ones that have no event: stopping
            # there would skip those for good.
            frontier = {
                i for i, at in stored.items() if stored_before is None or at < stored_before
            }
            # Known ones are kept current by their events; only the new ones are written.
            rows = [
                loader.object_row(o, response.server_time) for o in page if o["id"] not in known
            ]
            if rows:
                with conn.transaction():
                    written[spec.table] += loader.upsert_objects(conn, spec.table, rows)
            if frontier:
                break
    return written


def _mark_read_until(conn: psycopg.Connection, livemode: bool, at: datetime) -> None:
    """Every event up to `at` is applied: cursor_at moves there, so a quiet account's cursor does
    not look expired just because no event happened."""
    with conn.transaction():
        conn.execute(
            "update stripe_raw.sync_state set cursor_at = greatest(cursor_at, %s),"
            " updated_at = now() where livemode = %s",
            (at, livemode),
        )


def _add(total: ApplyResult, part: ApplyResult) -> None:
    total.events += part.events
    total.new_events += part.new_events
    total.written.update(part.written)
    total.refetched += part.refetched
    total.deleted += part.deleted
    total.completed_customers += part.completed_customers
    total.refreshed_customers += part.refreshed_customers
