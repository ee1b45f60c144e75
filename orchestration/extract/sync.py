"""sync_stripe: preflight, lock, account and mode checks, then backfill and/or events replay."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg

from orchestration.core.errors import (
    DatabaseError,
    StateMismatchError,
    StripeSyncError,
    SyncBusyError,
)
from orchestration.core.modes import SyncMode, parse_sync_mode
from orchestration.extract import backfill, events, items, loader, state
from orchestration.extract.client import API_VERSION, StripeApi, sanitize
from orchestration.extract.objects import EVENT_HISTORY, OBJECTS, STATE_OBJECTS
from orchestration.extract.preflight import AccessReport, check_access, require_access
from orchestration.extract.progress import Reporter

log = logging.getLogger("stripe_sync.extract")
# Where an account's data starts when Stripe does not say: before Stripe existed.
STRIPE_EPOCH = 1293840000  # 2011-01-01
RECORD_FAILURE_WAIT = 15.0  # seconds to wait for a lost warehouse to take the failure record
# The events history plan of a backfill that imports none: no `created` range to read.
NO_HISTORY: dict[str, Any] = {"lower": 0, "upper": 0, "done": []}


@dataclass
class ObjectResult:
    """One object type's figures for a run."""

    object: str
    objects: int = 0  # objects read and written this run (backfill pages + events applied)
    rows: int = 0  # rows of this mode in stripe_raw.<object> after the run
    deleted: int = 0


@dataclass
class SyncResult:
    """What a sync did, for the CLI and Dagster metadata."""

    account_id: str
    livemode: bool
    mode: str  # import-existing / new-only: the first sync's choice for this mode
    # What ran: backfill, resumed-backfill, re-backfill, reconcile, incremental, new-only, or
    # refresh (new-only mode past the event retention: stored customers read again).
    kind: str
    objects: dict[str, ObjectResult] = field(default_factory=dict)
    seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 answers, all retried
    events_applied: int = 0
    # Past events (Stripe's last 30 days before the cursor) read by an import-existing backfill
    # into stripe_raw.events, for history only.
    history_events: int = 0
    refetched: int = 0
    lag_seconds: float | None = None  # how far behind Stripe the tables are at the end
    cursor: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def total_objects(self) -> int:
        return sum(o.objects for o in self.objects.values())

    @property
    def objects_per_second(self) -> float:
        return self.total_objects / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """What `stripe-sync sync` prints: one line, then any warnings."""
        history = f" {self.history_events:,} past events stored," if self.history_events else ""
        lines = [
            f"{self.kind} ({'live' if self.livemode else 'test'} mode): {self.total_objects:,}"
            f" objects in {self.seconds:.1f} s, {self.events_applied:,} events applied,{history}"
            f" {self.requests:,} requests ({self.rate_limited} rate-limited, all retried)"
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def metadata(self) -> dict[str, Any]:
        """Flat figures for Dagster's MaterializeResult."""
        return {
            "kind": self.kind,
            "mode": self.mode,
            "livemode": self.livemode,
            "objects": self.total_objects,
            "objects_per_second": round(self.objects_per_second, 1),
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "history_events": self.history_events,
            "lag_seconds": self.lag_seconds,
            "cursor": self.cursor,
        }


def sync_stripe(
    database_url: str,
    api_key: str,
    *,
    api_base: str = "https://api.stripe.com",
    mode: str = SyncMode.import_existing,
    reset: bool = False,
    max_rps: float | None = None,
    progress: bool = False,
    reconcile: bool = False,
    lock_timeout: float = 0,
    api_version: str = API_VERSION,
) -> SyncResult:
    """Extracts Stripe into stripe_raw. The first sync of an account in a mode imports existing
    objects (or, with mode="new-only", starts from now); later syncs replay events. Raises a
    StripeSyncError subclass, with nothing written, on a bad key, a missing permission, another
    account's key (unless reset) or a concurrent sync."""
    mode = parse_sync_mode(mode)
    started = time.monotonic()
    client = StripeApi(api_key, api_base, max_rps=max_rps, api_version=api_version)
    access = check_access(api_key, api_base, client=client)
    require_access(access)
    client.coupons_readable = access.coupons_readable  # asked already: no second probe
    with loader.sync_lock(database_url, lock_timeout) as lock:
        fenced = loader.fenced_url(database_url, lock)
        with loader.connect(fenced, autocommit=True) as conn:
            result = _run_locked(
                conn, fenced, database_url, client, access, mode, reconcile, progress, reset
            )
    result.seconds = time.monotonic() - started
    result.requests = client.stats.requests
    result.retries = client.stats.retries
    result.rate_limited = client.stats.rate_limited
    return result


def _run_locked(
    conn: psycopg.Connection,
    fenced: str,
    database_url: str,
    client: StripeApi,
    access: AccessReport,
    mode: str,
    reconcile: bool,
    progress: bool,
    reset: bool,
) -> SyncResult:
    """The sync proper, under the sync lock; `conn` and `fenced` stop writing sync state once
    the lock is lost (loader.fenced_url)."""
    loader.ensure_raw_tables(conn)
    _guard_account(conn, access.account_id, reset)
    try:
        return _run(conn, fenced, client, access, mode, reconcile, progress)
    except BaseException as exc:
        if loader.lost_sync_lock(exc):
            # Not recorded as failed: another sync may hold the lock and be running by now.
            raise SyncBusyError(
                "the sync lost its lock on the warehouse (its connection dropped) and stopped,"
                " so that it cannot interleave with another sync; what it committed stays",
                "run the sync again; behind PgBouncer, point DATABASE_URL at Postgres or at a"
                " session-mode pool",
            ) from None
        _record_failure(conn, database_url, client.livemode, exc)
        if isinstance(exc, psycopg.OperationalError):
            # The warehouse went away mid-sync (restart, failover, network): an expected
            # failure, one line for the user; committed pages stay and the next sync resumes.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseError(
                f"lost the connection to the warehouse during the sync ({reason})",
                "check that Postgres is up, then sync again: it resumes where it stopped",
            ) from None
        raise


def _guard_account(conn: psycopg.Connection, account_id: str, reset: bool) -> None:
    other = state.other_account(conn, account_id)
    if other is None:
        return
    if not reset:
        raise StateMismatchError(
            f"the Stripe key belongs to account {account_id}, but this warehouse holds data of"
            f" account {other}",
            "use a key of that account, or run the sync with --reset to drop the synced data and"
            " start over with this account",
        )
    log.warning("--reset: dropping the data of account %s", other)
    state.reset_all(conn)


def _record_failure(
    conn: psycopg.Connection, database_url: str, livemode: bool, exc: BaseException
) -> None:
    message = exc.one_line() if isinstance(exc, StripeSyncError) else f"{type(exc).__name__}: {exc}"
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        state.record_failure(conn, livemode, sanitize(message))
        return
    except psycopg.OperationalError:
        pass  # the connection died with the server (restart, failover): reconnect below
    except psycopg.Error as failure:
        log.warning("could not record the failed sync in stripe_raw.sync_state: %s", failure)
        return
    # A restarting server is back within seconds; wait that long for it to take the record, so
    # `status` says failed rather than running.
    deadline = time.monotonic() + RECORD_FAILURE_WAIT
    while True:
        try:
            with loader.connect(database_url, autocommit=True) as fresh:
                state.record_failure(fresh, livemode, sanitize(message))
            return
        except (psycopg.Error, DatabaseError) as failure:
            if time.monotonic() >= deadline:
                # One line, no traceback: the failure itself is reported by the caller.
                log.warning(
                    "could not record the failed sync in stripe_raw.sync_state: %s", failure
                )
                return
            time.sleep(1.0)


def _run(
    conn: psycopg.Connection,
    database_url: str,
    client: StripeApi,
    access: AccessReport,
    mode: str,
    reconcile: bool,
    progress: bool,
) -> SyncResult:
    livemode = client.livemode
    states = state.load_state(conn, livemode)
    ev = states.get("events")
    if ev is None or any(name not in states for name in STATE_OBJECTS):
        kind, cursor_second = _first_sync(conn, client, access, mode)
        warnings: list[str] = []
    else:
        mode = ev.mode or mode
        state.mark_running(conn, livemode)
        kind, cursor_second, warning = _later_sync_kind(conn, client, ev, mode, reconcile)
        warnings = [warning] if warning else []
    result = SyncResult(access.account_id, livemode, mode, kind, warnings=warnings)
    for spec in OBJECTS:
        result.objects[spec.table] = ObjectResult(spec.table)
    if kind == "refresh":
        cursor_second = _refresh(conn, client, result)
    states = state.load_state(conn, livemode)
    backfilled = not states["events"].backfill_done
    if backfilled:
        # An import-existing backfill also imports the events Stripe still holds (history); a
        # reconcile keeps its cursor, whose past events are stored already. New-only: none.
        history = mode == "import-existing" and kind != "reconcile"
        _backfill(
            conn, database_url, client, access, states, result, progress, history, cursor_second
        )
    ev = state.load_state(conn, livemode)["events"]
    applied, drained_at = events.run_incremental(
        conn, client, ev.cursor, ev.cursor_at, cursor_second=cursor_second, poll=not backfilled
    )
    _add_applied(result, applied)
    # The backfill stores subscriptions as the list pages carried them (10 items at most). Every
    # sync completes what is stored incomplete, so rows a killed run left are fixed by the next.
    items.complete_stored(conn, client)
    counts = state.record_success(conn, livemode)
    for spec in OBJECTS:
        result.objects[spec.table].rows = counts[spec.table]
    result.cursor = state.load_state(conn, livemode)["events"].cursor
    # Complete up to the last events page: the lag is the time since Stripe answered it.
    result.lag_seconds = round(time.monotonic() - drained_at, 3) if drained_at else None
    return result


def _first_sync(
    conn: psycopg.Connection, client: StripeApi, access: AccessReport, mode: str
) -> tuple[str, int | None]:
    """First sync of this account in this key's mode: start the cursor at the newest event, then
    import everything (import-existing) or nothing (new-only). Returns what runs and the cursor
    event's second."""
    cursor, now, second = events.start_cursor(conn, client)
    state.init_state(
        conn,
        client.livemode,
        access.account_id,
        mode=mode,
        cursor=cursor,
        cursor_at=now,
        backfill_done=mode == SyncMode.new_only,
    )
    log.info("first sync in %s mode: %s", "live" if client.livemode else "test", mode)
    return ("new-only" if mode == SyncMode.new_only else "backfill"), second


def _later_sync_kind(
    conn: psycopg.Connection, client: StripeApi, ev: state.ObjectState, mode: str, reconcile: bool
) -> tuple[str, int | None, str | None]:
    """What a later sync runs, the cursor event's second, and a warning for the user, if any."""
    if not ev.backfill_done:
        log.info("resuming the interrupted backfill")
        return "resumed-backfill", None, None
    problem, second = events.cursor_problem(client, ev.cursor, ev.cursor_at)
    if problem is None and not reconcile:
        return "incremental", second, None
    warning = None
    if problem is not None:
        action = (
            "refreshing the customers already stored, then restarting from now"
            if mode == SyncMode.new_only
            else "running a fresh backfill"
        )
        warning = f"{problem}: changes since then cannot be replayed, {action}"
        log.warning("%s", warning)
        if mode == SyncMode.new_only:
            # A backfill would import the history the user chose to skip (events.py's
            # refresh_stored_customers). The old cursor stays until the refresh commits its
            # last rows, so a killed refresh runs again.
            return "refresh", None, warning
    if problem is None:
        # Reconcile: keep the cursor, so events since the last sync still replay afterwards.
        cursor, at = ev.cursor, ev.cursor_at
    else:
        cursor, at, second = events.start_cursor(conn, client)
    state.start_backfill(conn, client.livemode, cursor, at)
    return ("reconcile" if problem is None else "re-backfill"), second, warning


def _refresh(conn: psycopg.Connection, client: StripeApi, result: SyncResult) -> int | None:
    """New-only mode past the event retention: refreshes the stored customers (resuming an
    interrupted refresh while its cursor is still replayable) and restarts the cursor. Returns
    the new cursor event's second."""
    progress = state.load_refresh(conn, client.livemode)
    if progress is not None:
        at = datetime.fromisoformat(progress["cursor_at"])
        if events.cursor_problem(client, progress["cursor"], at)[0] is None:
            log.info("resuming the refresh of stored customers after %s", progress["after"])
        else:
            progress = None
    if progress is None:
        # Taken first, as a new-only start does: changes made during the refresh replay after it.
        cursor, at, second = events.start_cursor(conn, client)
        progress = {"cursor": cursor, "cursor_at": at.isoformat(), "second": second, "after": ""}
        with conn.transaction():
            state.save_refresh(conn, client.livemode, progress)
    applied = events.refresh_stored_customers(conn, client, progress)
    _add_applied(result, applied)
    result.objects["customers"].deleted += applied.deleted
    return progress["second"]


def _backfill(
    conn: psycopg.Connection,
    database_url: str,
    client: StripeApi,
    access: AccessReport,
    states: dict[str, state.ObjectState],
    result: SyncResult,
    progress: bool,
    history: bool,
    cursor_second: int | None,
) -> None:
    """Lists every object (resuming committed progress) and, with `history`, the events Stripe
    still holds from before the cursor (_history_plan); then flags rows the list no longer
    returned as deleted, then marks the backfill done; events replay afterwards."""
    fresh = None
    plans: dict[str, dict[str, Any]] = {}
    for spec in OBJECTS:
        plan = states[spec.table].progress
        if plan is None:
            if fresh is None:
                # Taken after the cursor (objects created later come through its events).
                now = client.last_server_time
                hint = access.account_created or STRIPE_EPOCH
                fresh = backfill.new_progress(now, int(now.timestamp()) + 1, hint)
            plan = {**fresh, "done": []}
        plans[spec.table] = plan
    plans[EVENT_HISTORY.table] = states[EVENT_HISTORY.table].progress or (
        _history_plan(client, states[EVENT_HISTORY.table], cursor_second)
        if history and fresh is not None
        else dict(NO_HISTORY)  # a reconcile, or a backfill resumed from before history existed
    )
    with conn.transaction():  # bounds fixed before any page lands, so a resume keeps them
        for table, plan in plans.items():
            state.save_progress(conn, table, client.livemode, plan)
    specs = list(OBJECTS)
    if backfill.initial_jobs(EVENT_HISTORY, plans[EVENT_HISTORY.table]):
        specs.append(EVENT_HISTORY)  # shares the workers, writers and request budget
    with Reporter([spec.table for spec in specs], bar=progress) as reporter:
        backfill.Backfill(database_url, client, client.livemode, plans, reporter).run(specs)
    result.history_events += reporter.counts[EVENT_HISTORY.table]
    with conn.transaction():
        for spec in OBJECTS:
            plan = plans[spec.table]
            started_at = datetime.fromisoformat(plan["started_at"])
            upper = datetime.fromtimestamp(plan["upper"], UTC)
            result.objects[spec.table].deleted += loader.mark_unseen_deleted(
                conn, spec.table, client.livemode, started_at, upper
            )
            result.objects[spec.table].objects += reporter.counts[spec.table]
        state.finish_backfill(conn, client.livemode)


def _history_plan(
    client: StripeApi, ev: state.ObjectState, cursor_second: int | None
) -> dict[str, Any]:
    """The backfill's plan for the events Stripe still holds (its last 30 days) from before the
    new cursor: `created` in [lower, upper). They are stored for history only, never applied:
    the objects are listed after the cursor was taken, so each stored row is at least as new as
    any of these events, and the events replay reads only what comes after the cursor. None is
    stored twice (stripe_raw.events is keyed by event id, inserts do nothing on conflict).

    The cursor's own second needs care: `ending_before` skips events created later in that
    second but listed after the cursor, and the next replay's same-second sweep applies those
    it finds unstored (events._same_second_as_cursor). Once that second had settled when the
    cursor was taken, the sweep is skipped and every event of it predates the sync: all of it
    is history. Otherwise it is left to the sweep (start_cursor stored the events it held then)."""
    if ev.cursor is None or ev.cursor_at is None:
        return dict(NO_HISTORY)  # Stripe held no event when the cursor was taken
    if cursor_second is None:
        found = client.retrieve(f"/v1/events/{quote(ev.cursor, safe='')}")
        if found is None:
            return dict(NO_HISTORY)
        cursor_second = int(found.data["created"])
    settled = ev.cursor_at.timestamp() - cursor_second >= events.SETTLED
    return {
        "started_at": ev.cursor_at.isoformat(),
        "lower": int((ev.cursor_at - events.EVENT_RETENTION).timestamp()),
        "upper": cursor_second + 1 if settled else cursor_second,
        "done": [],
    }


def _add_applied(result: SyncResult, applied: events.ApplyResult) -> None:
    result.events_applied += applied.events
    result.refetched += applied.refetched
    for table, n in applied.written.items():
        result.objects[table].objects += n
