"""Where verified events go: a small pool of connections, and one transaction per batch that
stores the events, applies them through the extractor's `apply_events` and logs the deliveries."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg

from orchestration.extract import loader
from orchestration.extract.client import StripeApi, sanitize
from orchestration.extract.events import apply_events

log = logging.getLogger("stripe_sync.webhooks")

SQL_DIR = Path(__file__).parent / "sql"
CONNECT_TIMEOUT = 5
# Two deliveries of one event (Stripe retrying while we are still answering) serialize on an
# advisory lock in this namespace (the two-int lock space never meets the sync's bigint locks).
EVENT_LOCK_NAMESPACE = 0x5EB7
DEADLOCK_RETRIES = 3


@cache
def read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def ensure_webhook_tables(conn: psycopg.Connection) -> None:
    """The raw tables (the extractor's DDL) and the delivery log (ours); both idempotent."""
    loader.ensure_raw_tables(conn)
    with conn.transaction():
        conn.execute(read_sql("create_webhook_tables"))


class ConnectionPool:
    """At most `size` autocommit connections, opened on demand and reused. A connection that
    failed (server gone, terminated) is dropped, so the next request reconnects."""

    def __init__(self, database_url: str, size: int) -> None:
        self.database_url = database_url
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        self._slots.acquire()
        conn: psycopg.Connection | None = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = psycopg.connect(
                    self.database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                )
            yield conn
        except BaseException:
            if conn is not None and (conn.closed or conn.broken):
                conn.close()
                conn = None
            raise
        finally:
            if conn is not None and not conn.closed:
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    self._idle.put(conn)
                else:
                    conn.close()
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


@dataclass
class Outcome:
    """What happened to one verified delivery."""

    outcome: str  # applied | duplicate
    event_id: str
    reason: str | None = None


def store_events(
    conn: psycopg.Connection, client: StripeApi, events: list[dict[str, Any]]
) -> list[Outcome]:
    """One transaction for a batch of verified deliveries (in arrival order): events not stored
    yet are applied by apply_events, the incremental sync's own code path; events already in
    stripe_raw.events (stored only together with what they changed) are duplicates and change
    nothing; one delivery-log row each. Nothing is visible until it commits."""
    for attempt in range(DEADLOCK_RETRIES):
        try:
            with conn.transaction():
                return _store(conn, client, events)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            if attempt == DEADLOCK_RETRIES - 1:
                raise
            log.warning("deadlock while storing %d webhook events; retrying", len(events))
    raise AssertionError("unreachable")  # pragma: no cover


def _store(
    conn: psycopg.Connection, client: StripeApi, events: list[dict[str, Any]]
) -> list[Outcome]:
    ids = sorted({event["id"] for event in events})
    # Sorted, so two batches sharing events take the locks in one order.
    conn.execute(
        "select pg_advisory_xact_lock(%s, k) from"
        " (select distinct hashtext(id) as k from unnest(%s::text[]) as id order by k) as keys",
        (EVENT_LOCK_NAMESPACE, ids),
    )
    stored = {
        row[0]
        for row in conn.execute("select id from stripe_raw.events where id = any(%s)", (ids,))
    }
    outcomes: list[Outcome] = []
    fresh: dict[str, dict[str, Any]] = {}
    for event in events:
        if event["id"] in stored or event["id"] in fresh:
            outcomes.append(Outcome("duplicate", event["id"]))
        else:
            fresh[event["id"]] = event
            outcomes.append(Outcome("applied", event["id"]))
    if fresh:
        # Oldest first, as the events API gives them; apply_events orders snapshots by `created`
        # anyway, so arrival order never matters.
        batch = sorted(fresh.values(), key=lambda e: (int(e.get("created") or 0), e["id"]))
        apply_events(conn, client, batch)
    types = {event["id"]: event.get("type") for event in events}
    with conn.cursor() as cur:
        cur.executemany(
            "insert into stripe_raw.webhook_deliveries (event_id, event_type, outcome, reason)"
            " values (%s, %s, %s, %s)",
            [(o.event_id, types[o.event_id], o.outcome, o.reason) for o in outcomes],
        )
    return outcomes


def log_rejection(pool: ConnectionPool, reason: str) -> None:
    """Best effort: a rejected delivery is answered 4xx whether or not its log row lands."""
    try:
        with pool.connection() as conn:
            conn.execute(
                "insert into stripe_raw.webhook_deliveries (outcome, reason)"
                " values ('rejected', %s)",
                (sanitize(reason),),
            )
    except psycopg.Error as exc:
        log.warning("could not log a rejected webhook delivery: %s", type(exc).__name__)
