"""Webhook health for `stripe-sync status`, read from stripe_raw.webhook_deliveries."""

from __future__ import annotations

from typing import Any

import psycopg

_QUERY = """
select
    max(received_at) filter (where outcome in ('applied', 'duplicate')),
    count(*) filter (where outcome = 'applied' and received_at > now() - interval '1 hour'),
    count(*) filter (where outcome = 'duplicate' and received_at > now() - interval '1 hour'),
    coalesce(sum(delivery_count) filter (
        where outcome = 'rejected' and received_at > now() - interval '1 hour'
    ), 0),
    coalesce(sum(delivery_count) filter (
        where outcome = 'rejected' and received_at > now() - interval '1 day'
    ), 0),
    max(received_at) filter (where outcome = 'rejected'),
    count(*) filter (where outcome = 'failed' and received_at > now() - interval '1 day'),
    max(received_at) filter (where outcome = 'failed')
from stripe_raw.webhook_deliveries
"""

_LAST_REJECTION = """
select reason from stripe_raw.webhook_deliveries
where outcome = 'rejected'
order by received_at desc
limit 1
"""


_LAST_FAILURE = """
select event_id, reason from stripe_raw.webhook_deliveries
where outcome = 'failed'
order by received_at desc
limit 1
"""


def read_webhook_health(conn: psycopg.Connection) -> dict[str, Any]:
    """What `status` shows about webhooks. `receiving` is False when the delivery log does not
    exist (webhooks never served on this warehouse); the counts are then zero.

    Keys: receiving, last_event_at (last verified delivery, applied or duplicate),
    events_last_hour (new events applied), duplicates_last_hour, rejected_last_hour,
    rejected_last_day (rejections are summary rows: their delivery counts are summed),
    last_rejected_at, last_rejected_reason, failed_last_day (verified events acknowledged but
    not applied), last_failed_at, last_failed_event_id, last_failed_reason.
    """
    health: dict[str, Any] = {
        "receiving": False,
        "last_event_at": None,
        "events_last_hour": 0,
        "duplicates_last_hour": 0,
        "rejected_last_hour": 0,
        "rejected_last_day": 0,
        "last_rejected_at": None,
        "last_rejected_reason": None,
        "failed_last_day": 0,
        "last_failed_at": None,
        "last_failed_event_id": None,
        "last_failed_reason": None,
    }
    exists = conn.execute(
        "select to_regclass('stripe_raw.webhook_deliveries') is not null"
    ).fetchone()
    if not exists or not exists[0]:
        return health
    has_counts = conn.execute(
        "select exists (select 1 from pg_attribute where attname = 'delivery_count'"
        " and attrelid = 'stripe_raw.webhook_deliveries'::regclass and not attisdropped)"
    ).fetchone()
    # A log from before summary rows (until the receiver restarts on this version): one each.
    query = _QUERY if has_counts and has_counts[0] else _QUERY.replace("delivery_count", "1")
    row = conn.execute(query).fetchone()
    assert row is not None  # noqa: S101 - an aggregate always returns a row
    (
        health["last_event_at"],
        health["events_last_hour"],
        health["duplicates_last_hour"],
        health["rejected_last_hour"],
        health["rejected_last_day"],
        health["last_rejected_at"],
        health["failed_last_day"],
        health["last_failed_at"],
    ) = row
    health["rejected_last_hour"] = int(health["rejected_last_hour"])
    health["rejected_last_day"] = int(health["rejected_last_day"])
    health["receiving"] = True
    if health["last_rejected_at"] is not None:
        reason = conn.execute(_LAST_REJECTION).fetchone()
        health["last_rejected_reason"] = reason[0] if reason else None
    if health["last_failed_at"] is not None:
        failure = conn.execute(_LAST_FAILURE).fetchone()
        if failure:
            health["last_failed_event_id"], health["last_failed_reason"] = failure
    return health


def render_webhook_health(health: dict[str, Any]) -> str:
    """The lines `status` prints for webhooks."""
    if not health["receiving"]:
        return "webhooks: never received (run `stripe-sync webhooks serve` to receive them)"
    last = health["last_event_at"]
    lines = [
        f"webhooks: last event received {last:%Y-%m-%d %H:%M:%S %Z}"
        if last
        else "webhooks: no event received yet",
        f"  events in the last hour: {health['events_last_hour']} new,"
        f" {health['duplicates_last_hour']} duplicate deliveries",
        f"  rejected deliveries: {health['rejected_last_hour']} in the last hour,"
        f" {health['rejected_last_day']} in the last day",
    ]
    if health["last_rejected_reason"]:
        lines.append(f"  last rejection: {health['last_rejected_reason']}")
    if health["failed_last_day"]:
        lines.append(
            f"  failed events (acknowledged, not applied): {health['failed_last_day']} in the"
            f" last day; last {health['last_failed_event_id']}: {health['last_failed_reason']}"
        )
    return "\n".join(lines)
