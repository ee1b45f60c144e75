"""Where verified events go: a small psycopg_pool of connections, and one transaction per batch
that stores the events, applies them through the extractor's `apply_events` and logs the
deliveries; the delivery log's other rows (failed events, summarized rejections), its retention."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from orchestration.core.errors import StripeKeyError, StripeSyncError, StripeUnavailableError
from orchestration.core.warehouse import RAW_CHANGED_CHANNEL
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
# "Stripe or the database is unavailable": the only errors that fail a whole batch (answered
# 5xx, so Stripe redelivers). They say nothing about the event and would fail each one alike; a
# rejected key (401) is among them, since no event is at fault and a fixed key lands the retry.
# Everything else is the event's own problem and is recorded against it alone.
UNAVAILABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    StripeUnavailableError,
    StripeKeyError,
)
# Errors of one event that no redelivery fixes: Stripe refusing its re-fetch (403, 400) and
# Postgres refusing its object (a value jsonb or a column cannot hold). Anything else is
# unexpected (a bug here, say): recorded too, but answered 5xx so the fixed receiver gets it.
PERMANENT: tuple[type[Exception], ...] = (
    StripeSyncError,
    psycopg.DataError,
    psycopg.IntegrityError,
)


@cache
def read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def ensure_webhook_tables(conn: psycopg.Connection) -> None:
    """The raw tables (the extractor's DDL) and the delivery log (ours); both idempotent."""
    loader.ensure_raw_tables(conn)
    with conn.transaction():
        conn.execute(read_sql("create_webhook_tables"))


def open_pool(database_url: str, size: int) -> ConnectionPool:
    """At most `size` autocommit connections, opened on demand and reused. A connection that
    broke (server gone, terminated) is dropped when it comes back, so a later request reconnects;
    one returned mid-transaction is rolled back."""
    return ConnectionPool(
        database_url,
        # None at start: the receiver starts, and answers 503, while the database is down.
        min_size=0,
        max_size=size,
        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
        name="webhooks",
        # While the database is unreachable a request waits this long for a connection, then
        # fails as unavailable (PoolTimeout is an OperationalError: 503, so Stripe redelivers).
        timeout=CONNECT_TIMEOUT,
        # psycopg_pool retries a failed connect in the background with back-off, and starts no
        # other attempt meanwhile. Giving up well before a request's timeout means the next
        # request after an outage connects at once instead of waiting for a back-off to expire.
        reconnect_timeout=CONNECT_TIMEOUT / 5,
        open=True,
    )


@dataclass
class Outcome:
    """What happened to one verified delivery."""

    outcome: str  # applied | duplicate | failed
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
        # Delivered at commit, never before: the resident builder's next build sees these rows.
        conn.execute("select pg_notify(%s, '')", (RAW_CHANGED_CHANNEL,))
    types = {event["id"]: event.get("type") for event in events}
    with conn.cursor() as cur:
        cur.executemany(
            "insert into stripe_raw.webhook_deliveries (event_id, event_type, outcome, reason)"
            " values (%s, %s, %s, %s)",
            [(o.event_id, types[o.event_id], o.outcome, o.reason) for o in outcomes],
        )
    return outcomes


def describe_error(exc: BaseException) -> str:
    """A storable one-liner: the problem of a StripeSyncError, else the exception type and the
    first line of its message; keys and secrets removed."""
    problem = getattr(exc, "problem", None)
    text = problem if isinstance(problem, str) and problem else str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return sanitize(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)[:500]


def record_failure(conn: psycopg.Connection, event: dict[str, Any], exc: BaseException) -> Outcome:
    """Logs a verified event that could not be applied, for `status` and the Dagster UI. The
    event itself is not stored in stripe_raw.events: a later delivery of it (a manual resend
    once the cause is fixed) is then applied, not taken for a duplicate."""
    reason = describe_error(exc)
    conn.execute(
        "insert into stripe_raw.webhook_deliveries (event_id, event_type, outcome, reason)"
        " values (%s, %s, 'failed', %s)",
        (event["id"], event.get("type"), reason),
    )
    return Outcome("failed", event["id"], reason)


def log_rejections(database_url: str, counts: Mapping[str, int]) -> None:
    """One summary row per rejection reason: how many deliveries were refused for it since the
    last flush. Its own short-lived connection, never the writers' pool, so a flood of refusals
    cannot hold a connection a delivery is waiting for."""
    with (
        psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn,
        conn.cursor() as cur,
    ):
        cur.executemany(
            "insert into stripe_raw.webhook_deliveries (outcome, reason, delivery_count)"
            " values ('rejected', %s, %s)",
            [(sanitize(reason), count) for reason, count in sorted(counts.items())],
        )


def prune_deliveries(conn: psycopg.Connection, retention_days: int) -> int:
    """Deletes delivery-log rows older than `retention_days`; how many. No log yet (webhooks
    never served on this warehouse): nothing to prune."""
    exists = conn.execute(
        "select to_regclass('stripe_raw.webhook_deliveries') is not null"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    cur = conn.execute(
        "delete from stripe_raw.webhook_deliveries"
        " where received_at < now() - make_interval(days => %s)",
        (retention_days,),
    )
    return cur.rowcount
