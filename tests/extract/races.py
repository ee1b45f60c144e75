"""Race harness: writers of the same objects at once (the sync's replay, webhook deliveries)
while "Stripe" (the emulator) keeps changing them within one second."""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from orchestration.emulator import Emulator
from orchestration.extract.client import StripeApi
from orchestration.extract.events import apply_events
from orchestration.webhooks.store import ensure_webhook_tables, store_events

# An API version other than the pinned one: an event rendered in it is re-fetched.
OTHER_VERSION = "2024-06-20"


def change_customer(emu: Emulator, customer_id: str, email: str, *, other_version: bool) -> dict:
    """Changes a customer's email at "Stripe" and returns its customer.updated event as a
    delivery carries it (read back over HTTP), in another API version if asked."""
    with emu.lock:
        compact, _ = emu.account.store.get("customers", customer_id)
        compact["email"] = email
        emu.account.save("customers", compact)
        event_id = emu.account.event("customer.updated", "customers", dict(compact))["id"]
    event = StripeApi(emu.test_key, emu.url, max_rps=1000).get(f"/v1/events/{event_id}").data
    if other_version:
        event["api_version"] = OTHER_VERSION
    return event


def apply_as(path: str, conn: psycopg.Connection, client: StripeApi, events: list[dict]) -> None:
    """Applies events the way the sync's replay does (a page, cursor advanced) or the webhook
    receiver does (one batch of deliveries)."""
    if path == "sync replay":
        apply_events(conn, client, events, advance_cursor=True)
    else:
        store_events(conn, client, events)


class Writer(threading.Thread):
    """Runs one writer, keeping its exception for the test to raise."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def race_same_second_events(
    emu: Emulator,
    database_url: str,
    api_base: str,
    rng: random.Random,
    *,
    writers: int,
    objects: int,
    changes: int,
) -> dict[str, tuple[str, str]]:
    """One round: `objects` customers each change `changes` times in one second of the
    emulator's clock; each event goes to a random writer as it happens (some twice, as Stripe
    retries), half of them in another API version (re-fetched). Writer 0 applies like the
    sync's replay, the others like the webhook receiver, each in batches of what it has
    received. Returns, per customer whose stored email differs from Stripe's, (stored, Stripe).
    """
    emu.advance_clock(5)
    customers = rng.sample(sorted(emu.objects("customers")), objects)
    inboxes: list[queue.Queue[dict | None]] = [queue.Queue() for _ in range(writers)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        ensure_webhook_tables(conn)

    def work(n: int) -> None:
        path = "sync replay" if n == 0 else "webhook receiver"
        client = StripeApi(emu.test_key, api_base, max_rps=10_000)
        with psycopg.connect(database_url, autocommit=True) as conn:
            done = False
            while not done:
                batch = [inboxes[n].get()]
                while len(batch) < rng.randint(1, 4):
                    try:
                        batch.append(inboxes[n].get_nowait())
                    except queue.Empty:
                        break
                done = None in batch
                batch = [e for e in batch if e is not None]
                if batch:
                    apply_as(path, conn, client, batch)

    threads = [Writer(lambda n=n: work(n)) for n in range(writers)]
    for thread in threads:
        thread.start()
    plan = [c for c in customers for _ in range(changes)]
    rng.shuffle(plan)
    for i, customer_id in enumerate(plan):
        event = change_customer(
            emu,
            customer_id,
            f"{i}.{rng.randrange(10**9)}@example.org",
            other_version=rng.random() < 0.5,
        )
        for n in rng.sample(range(writers), 2 if writers > 1 and rng.random() < 0.2 else 1):
            inboxes[n].put(event)
    for inbox in inboxes:
        inbox.put(None)
    for thread in threads:
        thread.finish()
    truth = emu.objects("customers")
    with psycopg.connect(database_url) as conn:
        stored = dict(
            conn.execute(
                "select id, data ->> 'email' from stripe_raw.customers where id = any(%s)",
                (customers,),
            ).fetchall()
        )
    return {
        c: (stored.get(c), truth[c]["email"])
        for c in customers
        if stored.get(c) != truth[c]["email"]
    }
