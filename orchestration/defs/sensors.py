"""Sensors: a build soon after webhook deliveries land, one run per burst."""

import json
from datetime import datetime

import dagster as dg
import psycopg

from orchestration.core.rows import one_row
from orchestration.defs.jobs import stripe_build_job
from orchestration.defs.resources import WarehouseResource
from orchestration.transform.resident import resident_builder_running, resident_covered_seq

# Runs in these states mean "a build is already on its way": a new one would only queue up.
PENDING_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


# How long the sensor waits for deliveries being written before it tries again next tick. The
# receiver inserts its log rows last, just before it commits, so the wait is short; deliveries
# arriving meanwhile queue behind the sensor's lock for at most this long.
LOCK_TIMEOUT = "2s"


def new_deliveries(conn: psycopg.Connection, cursor: str | None) -> tuple[int, str | None]:
    """Applied webhook deliveries after `cursor`: (how many, the cursor after the newest).

    The cursor is the delivery log's `seq`. Numbers are drawn at insert, not at commit: a
    transaction that inserted seq 5 may commit after one that inserted seq 6. So the log is read
    under a SHARE lock, which waits until every transaction inserting into it has ended; every
    number up to the newest is then final. No table yet (webhooks never served) reads as nothing
    new; writers busy past LOCK_TIMEOUT read as nothing new this time.
    """
    after_seq, after_at = _parse_cursor(cursor)
    try:
        with conn.transaction():
            conn.execute(f"set local lock_timeout = '{LOCK_TIMEOUT}'")
            conn.execute("lock table stripe_raw.webhook_deliveries in share mode")
            row = one_row(
                conn.execute(
                    """
                select count(*) filter (where outcome = 'applied'
                           and (%(after_at)s::timestamptz is null
                                or received_at > %(after_at)s::timestamptz)),
                       max(seq)
                from stripe_raw.webhook_deliveries
                where seq > %(after_seq)s
                """,
                    {"after_seq": after_seq, "after_at": after_at},
                )
            )
    except (
        psycopg.errors.UndefinedTable,
        psycopg.errors.InvalidSchemaName,
        psycopg.errors.LockNotAvailable,
    ):
        return 0, cursor
    count, newest = int(row[0]), row[1]
    if not count:
        return 0, cursor
    return count, json.dumps({"seq": newest})


def _parse_cursor(cursor: str | None) -> tuple[int, str | None]:
    """(seq after which deliveries are new, a timestamp they must also be later than). A cursor
    of an older version is a (received_at, event_id) pair: rows after that time count once, and
    the next cursor is a seq."""
    if not cursor:
        return 0, None
    value = json.loads(cursor)
    if "seq" in value:
        return int(value["seq"]), None
    datetime.fromisoformat(value["received_at"])  # a corrupt cursor fails loudly, not silently
    return 0, value["received_at"]


def _cursor_past_resident_builds(
    context: dg.SensorEvaluationContext, newest: str | None
) -> str | None:
    """The sensor's cursor moved up to the resident builder's latest COVERED_SEQ (never past the
    newest delivery, never back)."""
    covered = resident_covered_seq(context.instance)
    after, _ = _parse_cursor(context.cursor)
    if covered is None or covered <= after or newest is None:
        return context.cursor
    return json.dumps({"seq": min(covered, json.loads(newest)["seq"])})


def build_is_pending(instance: dg.DagsterInstance) -> bool:
    """A run of the build job is queued or in progress."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=stripe_build_job.name, statuses=PENDING_STATUSES), limit=1
    )
    return bool(runs)


@dg.sensor(
    name="webhook_build_sensor",
    job=stripe_build_job,
    # Webhook deliveries reach the segments in seconds, and a burst still becomes one build (none
    # starts while one is queued or running). The sensor asks for 2 s, but Dagster's sensor daemon
    # (1.13) evaluates a sensor at most every 5 s (its loop's MIN_INTERVAL_LOOP_TIME), so a burst
    # waits 0–5 s for the tick, then 0–5 s in the run queue (dequeue_interval_seconds): measured
    # by bench/dagster_bench.py.
    minimum_interval_seconds=2,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests a build when webhook deliveries were applied to stripe_raw since the last"
        " request; one run per burst, none while a build is queued or running, none while the"
        " webhook receiver's resident builder builds them itself."
    ),
)
def webhook_build_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    """Debounced: the cursor moves only when a run is requested, so deliveries that land while
    a build is pending trigger the next build once it is done."""
    try:
        with warehouse.connect() as conn:
            count, cursor = new_deliveries(conn, context.cursor)
            resident = bool(count) and resident_builder_running(conn)
    except psycopg.OperationalError as exc:
        return dg.SkipReason(f"warehouse unreachable: {str(exc).strip().splitlines()[0]}")
    if not count:
        return dg.SkipReason("no webhook deliveries applied since the last build request")
    if resident:
        # `webhooks serve` builds them itself, seconds after they land. The cursor moves only
        # past what its builds recorded as built: if it stops, the rest is still new here.
        return dg.SensorResult(
            skip_reason=f"{count} new deliveries: the webhook receiver's resident builder"
            " builds them",
            cursor=_cursor_past_resident_builds(context, cursor),
        )
    if build_is_pending(context.instance):
        return dg.SkipReason(f"{count} new deliveries; a build is already queued or running")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"webhooks:{cursor}",
                tags={"stripe_sync/trigger": "webhooks", "stripe_sync/deliveries": str(count)},
            )
        ],
        cursor=cursor,
    )


sensors = [webhook_build_sensor]
