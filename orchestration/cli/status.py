"""Sync health (`stripe-sync status`): the facts the UI shows, read from the warehouse.

The mart stripe.sync_health gives each object's status, rows, cursor and last error (before the
first build, stripe_raw.sync_state does); customer_fields the customers in sync; the Dagster
instance (its API, not its tables) the last run of a Stripe Sync job. "Stale" is the one rule of
Settings.stripe_sync_stale_after_hours, applied at the time of asking.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg

from orchestration.cli.segments import DEAD_LETTERS_SHOWN, render_delivery_status
from orchestration.core.rows import one_row
from orchestration.defs.tags import SERIAL_TAG, SERIAL_TAGS
from orchestration.delivery import delivery_status, list_dead_letters
from orchestration.webhooks.health import read_webhook_health, render_webhook_health

# What the table's numbers count, printed under it: an events row count of 0 after a first
# sync looks like a failure to anyone who does not know the events table is a change log.
ROWS_EXPLAINED = (
    "  rows stored: rows of stripe_raw.<object> in this mode, deleted objects included (flagged)",
    "  events: Stripe's change log, which incremental syncs apply to the other tables; it holds",
    "  the events since the first sync (0 until something changes in Stripe)",
)


@dataclass(frozen=True)
class ObjectHealth:
    object: str
    status: str
    rows: int
    last_success_at: datetime | None
    cursor_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class LastRun:
    job: str
    status: str
    at: datetime | None
    run_id: str


@dataclass
class Health:
    """Where the sync of one mode stands."""

    livemode: bool
    objects: list[ObjectHealth] = field(default_factory=list)
    customers_in_sync: int | None = None
    last_run: LastRun | None = None
    webhooks: dict[str, Any] | None = None
    segment_delivery: list[str] = field(default_factory=list)  # lines of cli/segments.py
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def failed(self) -> bool:
        """The last sync failed (any synced object failed), or the last run of a job did.
        sync_health's `coupon_terms` line is shown but is a permission to grant, not a failure."""
        run_failed = self.last_run is not None and self.last_run.status == "FAILURE"
        synced = [o for o in self.objects if o.object != COUPON_TERMS]
        return any(o.status == "failed" for o in synced) or run_failed

    @property
    def last_success_at(self) -> datetime | None:
        """When every object was last caught up: the oldest of their last successes."""
        times = [o.last_success_at for o in self.objects if o.object != COUPON_TERMS]
        return None if not times or None in times else min(t for t in times if t)

    @property
    def lag_seconds(self) -> float | None:
        at = self.last_success_at
        return None if at is None else max(0.0, (self.now - at).total_seconds())

    @property
    def last_error(self) -> str | None:
        return next((o.last_error for o in self.objects if o.last_error), None)

    def render(self) -> str:
        mode = "live" if self.livemode else "test"
        if not self.objects:
            return f"no sync yet in {mode} mode: run `stripe-sync run` (or `stripe-sync sync`)"
        header = ("object", "status", "rows stored", "last success", "behind")
        rows = [
            (
                o.object,
                o.status,
                str(o.rows),
                _when(o.last_success_at),
                _duration(None if not o.last_success_at else self.now - o.last_success_at),
            )
            for o in self.objects
        ]
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        table = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in (header, *rows)
        ]
        at = self.last_success_at
        customers = "—" if self.customers_in_sync is None else str(self.customers_in_sync)
        lines = [
            f"mode: {mode}",
            *table,
            *ROWS_EXPLAINED,
            f"customers in sync: {customers} (stripe.customer_fields: not deleted, {mode} mode)",
            f"last successful sync: {_when(at)}",
            f"behind Stripe: {_duration(None if at is None else self.now - at)}",
            f"last error: {self.last_error or 'none'}",
        ]
        if self.last_run:
            run = self.last_run
            lines.append(
                f"last run: {run.job} {run.status.lower()} at {_when(run.at)} ({run.run_id[:8]})"
            )
        if self.webhooks is not None:
            lines.append(render_webhook_health(self.webhooks))
        lines.extend(self.segment_delivery)
        return "\n".join(lines)


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "never"


def _duration(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


# sync_health's line for customers whose coupon terms the key can't read (docs/contract.md).
COUPON_TERMS = "coupon_terms"


def read_objects(
    conn: psycopg.Connection, livemode: bool, *, stale_after: timedelta, now: datetime
) -> list[ObjectHealth]:
    """Per object, as stripe.sync_health (built in the key's mode) says; before the first build,
    as stripe_raw.sync_state says. Either way an `ok` older than `stale_after` is `stale` now:
    the mart's status is as of its build."""
    queries = (
        (
            "select object, status, rows, last_success_at, cursor_at, last_error"
            " from stripe.sync_health order by object",
            (),
        ),
        (
            "select object, status, rows, last_success_at, cursor_at, last_error"
            " from stripe_raw.sync_state where livemode = %s order by object",
            (livemode,),
        ),
    )
    for query, params in queries:
        try:
            with conn.transaction():
                rows = conn.execute(query, params).fetchall()
        except psycopg.errors.UndefinedTable:
            continue
        return [_stale_now(ObjectHealth(*row), stale_after, now) for row in rows]
    return []


def _stale_now(health: ObjectHealth, stale_after: timedelta, now: datetime) -> ObjectHealth:
    at = health.last_success_at
    if health.status == "ok" and (at is None or now - at > stale_after):
        return replace(health, status="stale")
    return health


def read_customers_in_sync(conn: psycopg.Connection, livemode: bool) -> int | None:
    """Rows of stripe.customer_fields (built in the key's mode); before any build, the raw count."""
    for query, params in (
        ("select count(*) from stripe.customer_fields", ()),
        (
            "select count(*) from stripe_raw.customers where livemode = %s and not is_deleted",
            (livemode,),
        ),
    ):
        try:
            with conn.transaction():
                return int(one_row(conn.execute(query, params))[0])
        except psycopg.errors.UndefinedTable:
            continue
    return None


def read_last_run(instance: dg.DagsterInstance) -> LastRun | None:
    """The latest run of a job that syncs or builds (they all carry the serial tag)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={SERIAL_TAG: SERIAL_TAGS[SERIAL_TAG]}), limit=1
    )
    if not records:
        return None
    record = records[0]
    run = record.dagster_run
    return LastRun(
        job=run.job_name, status=run.status.value, at=record.update_timestamp, run_id=run.run_id
    )


def read_segment_delivery(conn: psycopg.Connection) -> list[str]:
    """Each segment webhook receiver's cursor, backlog and dead letters (none before delivery)."""
    letters = list_dead_letters(conn, limit=DEAD_LETTERS_SHOWN + 1)
    return render_delivery_status(delivery_status(conn), letters)


def read_health(
    url: str,
    *,
    livemode: bool,
    stale_after: timedelta = timedelta(hours=24),
    instance: dg.DagsterInstance | None = None,
) -> Health:
    """Everything `stripe-sync status` prints, for the given mode; the last run when given the
    Dagster instance."""
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        health = Health(
            livemode=livemode,
            now=now,
            objects=read_objects(conn, livemode, stale_after=stale_after, now=now),
            customers_in_sync=read_customers_in_sync(conn, livemode),
            webhooks=read_webhook_health(conn),
            segment_delivery=read_segment_delivery(conn),
        )
    if instance is not None:
        health.last_run = read_last_run(instance)
    return health
