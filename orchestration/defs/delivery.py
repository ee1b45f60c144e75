"""Outbound segment changes in Dagster: a job that delivers them, and a sensor that starts it
whenever SEGMENT_WEBHOOK_URL is set and the receiver's cursor trails the change feed."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg

from orchestration.core.errors import StripeSyncError
from orchestration.core.settings import load_settings
from orchestration.defs.resources import WarehouseResource
from orchestration.defs.tags import SERIAL_TAG
from orchestration.delivery import (
    deliver_changes,
    delivery_status,
    endpoint_from_settings,
    list_dead_letters,
    pending_changes,
)

DEAD_LETTERS_SHOWN = 20  # in a run's metadata; stripe_raw.segment_delivery_dead_letters has all
# After a run that failed a change, the sensor waits this long per failed attempt of that change
# before it tries again (at most MAX_BACKOFF): an outage costs a few runs an hour, not 120.
BACKOFF_PER_ATTEMPT = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)


@dg.op(
    description=(
        "POSTs the segment changes after the receiver's cursor to SEGMENT_WEBHOOK_URL, signed"
        " with SEGMENT_WEBHOOK_SECRET; fails when the receiver fails a change (the cursor stays)."
    )
)
def deliver_segment_changes(
    context: dg.OpExecutionContext, warehouse: WarehouseResource
) -> dg.Output[int]:
    endpoint = endpoint_from_settings(load_settings())
    result = deliver_changes(warehouse.url(), endpoint)
    with warehouse.connect() as conn:
        letters = list_dead_letters(conn, endpoint_id=endpoint.id, limit=DEAD_LETTERS_SHOWN)
    metadata: dict[str, dg.RawMetadataValue] = {
        "receiver": endpoint.name,
        "delivered": result.delivered,
        "dead_lettered": result.dead_lettered,
        "posts": result.posts,
        "cursor_change_id": result.last_change_id,
        "pending": result.pending,
    }
    if letters:
        rows = "\n".join(
            f"| {d.change_id} | {d.last_status or '—'} | {d.reason} | {d.attempts}"
            f" | {d.dead_lettered_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} |"
            for d in letters
        )
        metadata["dead_letters"] = dg.MetadataValue.md(
            "| change | status | reason | attempts | at (UTC) |\n|---|---|---|---|---|\n" + rows
        )
    if result.failed:
        raise dg.Failure(description=result.stopped, metadata=metadata)
    context.log.info(
        f"{result.delivered} change(s) delivered to {endpoint.name},"
        f" {result.dead_lettered} dead-lettered, {result.pending} pending"
    )
    return dg.Output(result.delivered, metadata=metadata)


@dg.job(
    name="segment_delivery_job",
    description="Deliver segment changes to SEGMENT_WEBHOOK_URL (signed, at-least-once).",
    # The queue admits one delivery run at a time; builds and syncs run beside it.
    tags={SERIAL_TAG: "segment_delivery"},
)
def segment_delivery_job() -> None:
    deliver_segment_changes()


_PENDING_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _delivery_is_pending(instance: dg.DagsterInstance) -> bool:
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=segment_delivery_job.name, statuses=_PENDING_STATUSES),
        limit=1,
    )
    return bool(runs)


@dg.sensor(
    name="segment_delivery_sensor",
    # By name: a sensor given the op job itself is rebound with its resources, which makes
    # Dagster 1.13 warn (BetaWarning, "owners") at every start-up.
    job_name="segment_delivery_job",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "When SEGMENT_WEBHOOK_URL is set, starts a delivery run whenever segment changes wait"
        " after the receiver's cursor; after a failed run it backs off (30 s per failed"
        " attempt of the change, at most an hour)."
    ),
)
def segment_delivery_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.RunRequest | dg.SkipReason:
    try:
        settings = load_settings()
        if not settings.segment_webhook_url:
            return dg.SkipReason("SEGMENT_WEBHOOK_URL is not set: outbound delivery is off")
        endpoint = endpoint_from_settings(settings)
        with warehouse.connect() as conn:
            pending = pending_changes(conn, endpoint.id)
            states = delivery_status(conn, endpoint_id=endpoint.id)
    except StripeSyncError as exc:
        return dg.SkipReason(exc.one_line())
    except psycopg.OperationalError as exc:
        return dg.SkipReason(f"warehouse unreachable: {str(exc).strip().splitlines()[0]}")
    if not pending:
        return dg.SkipReason(f"no segment changes after {endpoint.name}'s cursor")
    if states and states[0].failing_attempts:
        state = states[0]
        wait = min(MAX_BACKOFF, BACKOFF_PER_ATTEMPT * state.failing_attempts)
        if datetime.now(UTC) < state.updated_at + wait:
            return dg.SkipReason(
                f"{pending} change(s) pending; retrying after {state.updated_at + wait:%H:%M:%S}"
                f" UTC ({state.last_error})"
            )
    if _delivery_is_pending(context.instance):
        return dg.SkipReason(f"{pending} change(s) pending; a delivery is queued or running")
    return dg.RunRequest(
        tags={"stripe_sync/trigger": "segment_changes", "stripe_sync/pending": str(pending)}
    )
