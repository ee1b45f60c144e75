"""Sensors: a build soon after webhook deliveries land, one run per burst."""

import json
from datetime import datetime

import dagster as dg
import psycopg

from orchestration.jobs import stripe_build_job
from orchestration.resources import WarehouseResource

# Runs in these states mean "a build is already on its way": a new one would only queue up.
PENDING_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def new_deliveries(conn: psycopg.Connection, cursor: str | None) -> tuple[int, str | None]:
    """Applied webhook deliveries after `cursor`: (how many, the cursor after the newest).

    The cursor is (received_at, event_id), so deliveries sharing a timestamp are neither lost nor
    counted twice. No table yet (webhooks never served) reads as nothing new.
    """
    after_at, after_id = _parse_cursor(cursor)
    try:
        row = conn.execute(
            """
            select count(*), max(array[to_char(received_at at time zone 'UTC',
                       'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'), coalesce(event_id, '')])
            from stripe_raw.webhook_deliveries
            where outcome = 'applied'
              and (received_at, coalesce(event_id, '')) > (%s::timestamptz, %s)
            """,
            (after_at, after_id),
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        return 0, cursor
    count, newest = int(row[0]), row[1]
    if not count:
        return 0, cursor
    return count, json.dumps({"received_at": newest[0], "event_id": newest[1]})


def _parse_cursor(cursor: str | None) -> tuple[str, str]:
    if not cursor:
        return "-infinity", ""
    value = json.loads(cursor)
    datetime.fromisoformat(value["received_at"])  # a corrupt cursor fails loudly, not silently
    return value["received_at"], value.get("event_id", "")


def build_is_pending(instance: dg.DagsterInstance) -> bool:
    """A run of the build job is queued or in progress."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=stripe_build_job.name, statuses=PENDING_STATUSES), limit=1
    )
    return bool(runs)


@dg.sensor(
    name="webhook_build_sensor",
    job=stripe_build_job,
    minimum_interval_seconds=20,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests a build when webhook deliveries were applied to stripe_raw since the last"
        " request; one run per burst, none while a build is queued or running."
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
    except psycopg.OperationalError as exc:
        return dg.SkipReason(f"warehouse unreachable: {str(exc).strip().splitlines()[0]}")
    if not count:
        return dg.SkipReason("no webhook deliveries applied since the last build request")
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
