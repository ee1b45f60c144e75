"""POSTs the segment change feed to a receiver: in change_id order, signed, at-least-once.

One transaction per change: lock the receiver's cursor row (SELECT … FOR UPDATE), read the first
change after it, POST it (retrying with back-off), then move the cursor, or dead-letter the
change, and commit. The cursor only moves after a 2xx or a dead letter, so a crash between the
2xx and the commit delivers that change again (a receiver dedupes on change_id); the row lock
makes two deliverers of one receiver take turns, so neither POSTs a change the other already
committed, and the receiver sees changes in order.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from orchestration.core.rows import one_row
from orchestration.delivery.endpoint import DeliveryError, Endpoint
from orchestration.delivery.signature import HEADER, sign

log = logging.getLogger("stripe_sync.delivery")
# A library logs only where its caller configured logging: the CLI prints its own one line, and
# Python's last-resort handler would otherwise add warnings to stderr.
log.addHandler(logging.NullHandler())

FEED_TABLE = "stripe_segments.segment_changes"
ATTEMPT_HEADER = "Stripe-Sync-Attempt"
SQL_DIR = Path(__file__).parent / "sql"
CONNECT_TIMEOUT = 10
# Any fixed number: it names "creating the delivery tables" among the warehouse's advisory locks.
DDL_LOCK_KEY = 0x5E6D_0001


class FeedMissingError(DeliveryError):
    """The change feed has not been built yet."""


class Verdict(Enum):
    """What one POST's outcome means for its change."""

    DELIVERED = "delivered"
    # The receiver is unreachable or overloaded: retry; no change is at fault, so never a dead
    # letter (an outage must not empty the feed into the dead-letter table).
    UNAVAILABLE = "unavailable"
    # The receiver answered an error that may be this change's (500): retry, and dead-letter
    # the change once it failed RetryPolicy.dead_letter_after times across runs.
    FAILED = "failed"
    # The receiver refuses this change for good (400, 409, 413, 422, …): dead-letter it now.
    REFUSED = "refused"
    # The receiver refuses everything (wrong URL, wrong secret, a redirect): no change is at
    # fault and no retry helps until the configuration is fixed; stop without moving the cursor.
    MISCONFIGURED = "misconfigured"


# 408 and 429 ask to come back later; 502–504 are a proxy saying the receiver is down.
_UNAVAILABLE_STATUSES = frozenset({408, 425, 429, 502, 503, 504})
# Statuses about the endpoint, never one change: authentication (a receiver verifying our
# signature should answer 401 or 403 when it fails), a URL that is not there.
_MISCONFIGURED_STATUSES = frozenset({401, 403, 404, 405, 410})


def classify(status: int | None) -> Verdict:
    """The verdict on a response status; None means no response (connection error, timeout)."""
    if status is None or status in _UNAVAILABLE_STATUSES:
        return Verdict.UNAVAILABLE
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in _MISCONFIGURED_STATUSES or 300 <= status < 400:
        return Verdict.MISCONFIGURED
    if 400 <= status < 500:
        return Verdict.REFUSED
    return Verdict.FAILED


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one run tries one change, and when a failing change becomes a dead letter."""

    max_attempts: int = 5  # POSTs of one change per run (the first one included)
    base_delay: float = 0.5  # seconds before the first retry; doubles each retry
    max_delay: float = 30.0  # cap of one back-off (and of a Retry-After we honour)
    dead_letter_after: int = 10  # 5xx answers to one change, across runs, before dead-lettering it
    timeout: float = 10.0  # seconds for one POST (connect, send, wait for the answer)

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds before retry number `retry` (1, 2, …): exponential, capped, with "equal
        jitter" (half fixed, half random) so deliverers that failed together do not retry
        together; a receiver's Retry-After wins when it is within the cap."""
        if retry_after is not None and 0 <= retry_after <= self.max_delay:
            return retry_after
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not a secret)


@dataclass
class DeliveryResult:
    """What one run did."""

    endpoint: str  # the receiver's scheme, host and port
    delivered: int = 0
    dead_lettered: int = 0
    posts: int = 0  # HTTP requests made, retries included
    last_change_id: int = 0  # the cursor after the run
    pending: int = 0  # changes after the cursor when the run ended
    stopped: str | None = None  # why the run stopped before the end of the feed, if it did
    failed: bool = False  # it stopped because the receiver failed (not for a budget)
    dead_letter_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Outcome:
    verdict: Verdict
    status: int | None
    reason: str
    posts: int


@cache
def _read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def ensure_delivery_tables(conn: psycopg.Connection) -> None:
    """Creates the cursor and dead-letter tables if they are missing. Concurrent `create … if not
    exists` can still collide in Postgres's catalog: deliverers serialize on an advisory lock,
    and a collision with another writer of the schema (the extractor) is retried once."""
    for attempt in (1, 2):
        try:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
                conn.execute(_read_sql("create_delivery_tables"))
            return
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
            if attempt == 2:
                raise


def feed_exists(conn: psycopg.Connection) -> bool:
    """True once a build has created the change feed."""
    return one_row(conn.execute("select to_regclass(%s) is not null", (FEED_TABLE,)))[0]


def encode_change(row: dict[str, Any]) -> bytes:
    """The JSON body of one change: every column of the feed row, times as ISO-8601 in UTC."""
    return json.dumps(
        {key: _jsonable(value) for key, value in row.items()},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def deliver_changes(
    database_url: str,
    endpoint: Endpoint,
    *,
    policy: RetryPolicy | None = None,
    max_changes: int | None = None,
    time_budget: float | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """Delivers every change after `endpoint`'s cursor, or until `max_changes` changes were
    settled or `time_budget` seconds passed. Stops early, with `stopped` saying why, when the
    receiver is unavailable or misconfigured; the next run resumes at the same change. Raises
    FeedMissingError before the first build, psycopg errors when the warehouse fails."""
    policy = policy or RetryPolicy()
    result = DeliveryResult(endpoint=endpoint.name)
    started = time.monotonic()
    with psycopg.connect(
        database_url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT,
        application_name="stripe-sync segment delivery",
    ) as conn:
        ensure_delivery_tables(conn)
        if not feed_exists(conn):
            raise FeedMissingError(
                f"{FEED_TABLE} does not exist yet", "run `stripe-sync build` first"
            )
        conn.execute(
            "insert into stripe_raw.segment_delivery_state (endpoint_id, endpoint_name)"
            " values (%s, %s) on conflict (endpoint_id) do nothing",
            (endpoint.id, endpoint.name),
        )
        http = client or httpx.Client(timeout=policy.timeout, follow_redirects=False)
        try:
            while True:
                settled = result.delivered + result.dead_lettered
                if max_changes is not None and settled >= max_changes:
                    result.stopped = f"stopped after {settled} change(s) (max_changes)"
                    break
                if time_budget is not None and time.monotonic() - started >= time_budget:
                    result.stopped = f"stopped after {time_budget:g} s (time budget)"
                    break
                if not _deliver_next(conn, http, endpoint, policy, result, sleep):
                    break
        finally:
            if client is None:
                http.close()
        result.pending = _pending_after(conn, endpoint.id)
    log.info(
        "segment changes to %s: %d delivered, %d dead-lettered, %d pending%s",
        endpoint.name,
        result.delivered,
        result.dead_lettered,
        result.pending,
        f" ({result.stopped})" if result.stopped else "",
    )
    return result


def _deliver_next(
    conn: psycopg.Connection,
    http: httpx.Client,
    endpoint: Endpoint,
    policy: RetryPolicy,
    result: DeliveryResult,
    sleep: Callable[[float], None],
) -> bool:
    """Settles the change after the cursor in one transaction; False when the run should end."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # The lock every deliverer of this receiver takes first: the second waits here until
        # the first committed, then reads the cursor the first moved.
        state = cur.execute(
            "select last_change_id, failing_change_id, failing_attempts"
            " from stripe_raw.segment_delivery_state where endpoint_id = %s for update",
            (endpoint.id,),
        ).fetchone()
        if state is None:  # deleted by hand during the run; the next run starts it again
            result.stopped = "the receiver's cursor row was deleted during the run"
            return False
        result.last_change_id = state["last_change_id"]
        change = cur.execute(
            "select * from stripe_segments.segment_changes where change_id > %s"
            " order by change_id limit 1",
            (state["last_change_id"],),
        ).fetchone()
        if change is None:
            return False
        change_id = int(change["change_id"])
        payload = encode_change(change)
        previous = state["failing_attempts"] if state["failing_change_id"] == change_id else 0
        outcome = _post_with_retries(http, endpoint, payload, policy, previous, sleep)
        result.posts += outcome.posts
        failures = previous + outcome.posts - (outcome.verdict is Verdict.DELIVERED)
        if outcome.verdict is Verdict.DELIVERED:
            cur.execute(
                "update stripe_raw.segment_delivery_state set last_change_id = %s,"
                " delivered_count = delivered_count + 1, failing_change_id = null,"
                " failing_attempts = 0, last_error = null, last_delivered_at = now(),"
                " updated_at = now() where endpoint_id = %s",
                (change_id, endpoint.id),
            )
            result.delivered += 1
            result.last_change_id = change_id
            return True
        dead = outcome.verdict is Verdict.REFUSED or (
            outcome.verdict is Verdict.FAILED and failures >= policy.dead_letter_after
        )
        if dead:
            cur.execute(
                "insert into stripe_raw.segment_delivery_dead_letters (endpoint_id, change_id,"
                " endpoint_name, attempts, last_status, reason, payload)"
                " values (%s, %s, %s, %s, %s, %s, %s::jsonb)"
                " on conflict (endpoint_id, change_id) do nothing",
                (
                    endpoint.id,
                    change_id,
                    endpoint.name,
                    failures,
                    outcome.status,
                    outcome.reason,
                    payload.decode(),
                ),
            )
            cur.execute(
                "update stripe_raw.segment_delivery_state set last_change_id = %s,"
                " dead_letter_count = dead_letter_count + 1, failing_change_id = null,"
                " failing_attempts = 0, last_error = %s, updated_at = now()"
                " where endpoint_id = %s",
                (change_id, f"change {change_id}: {outcome.reason}", endpoint.id),
            )
            log.warning(
                "segment change %d dead-lettered for %s: %s",
                change_id,
                endpoint.name,
                outcome.reason,
            )
            result.dead_lettered += 1
            result.dead_letter_ids.append(change_id)
            result.last_change_id = change_id
            return True
        # Unavailable, misconfigured, or a 5xx not yet failed often enough: the cursor stays and
        # the next run starts with this change, knowing how often it failed.
        cur.execute(
            "update stripe_raw.segment_delivery_state set failing_change_id = %s,"
            " failing_attempts = %s, last_error = %s, updated_at = now()"
            " where endpoint_id = %s",
            (change_id, failures, f"change {change_id}: {outcome.reason}", endpoint.id),
        )
        result.stopped = f"change {change_id} not delivered: {outcome.reason}"
        result.failed = True
        log.warning("segment delivery to %s stopped: %s", endpoint.name, result.stopped)
        return False


def _post_with_retries(
    http: httpx.Client,
    endpoint: Endpoint,
    payload: bytes,
    policy: RetryPolicy,
    previous_failures: int,
    sleep: Callable[[float], None],
) -> _Outcome:
    """POSTs one change until a verdict that retrying cannot change, or max_attempts."""
    outcome = _Outcome(Verdict.UNAVAILABLE, None, "not attempted", 0)
    for attempt in range(1, policy.max_attempts + 1):
        status, reason, retry_after = _post(http, endpoint, payload, previous_failures + attempt)
        outcome = _Outcome(classify(status), status, reason, attempt)
        if outcome.verdict not in (Verdict.UNAVAILABLE, Verdict.FAILED):
            return outcome
        if (
            outcome.verdict is Verdict.FAILED
            and previous_failures + attempt >= policy.dead_letter_after
        ):
            return outcome
        if attempt < policy.max_attempts:
            sleep(policy.delay(attempt, retry_after))
    return outcome


def _post(
    http: httpx.Client, endpoint: Endpoint, payload: bytes, attempt: int
) -> tuple[int | None, str, float | None]:
    """One signed POST: (status or None, a reason safe to store, the Retry-After seconds)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "stripe-sync segment delivery",
        HEADER: sign(payload, endpoint.secret),  # signed anew on every attempt, like Stripe
        ATTEMPT_HEADER: str(attempt),
    }
    try:
        response = http.post(endpoint.url, content=payload, headers=headers)
    except httpx.HTTPError as exc:
        # httpx messages may quote the URL, which may hold a token: redacted.
        detail = endpoint.redact(str(exc)) or "no detail"
        return None, f"{type(exc).__name__}: {detail}"[:300], None
    reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    retry_after = response.headers.get("Retry-After", "")
    seconds = float(retry_after) if retry_after.strip().isdigit() else None
    return response.status_code, reason, seconds


def _pending_after(conn: psycopg.Connection, endpoint_id: str) -> int:
    row = one_row(
        conn.execute(
            "select count(*) from stripe_segments.segment_changes where change_id > coalesce("
            " (select last_change_id from stripe_raw.segment_delivery_state"
            " where endpoint_id = %s), 0)",
            (endpoint_id,),
        )
    )
    return int(row[0])
