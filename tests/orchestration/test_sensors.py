"""The webhook sensor: a build when deliveries land, one per burst, none while one is pending."""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest

from orchestration.definitions import defs
from orchestration.resources import WarehouseResource
from orchestration.sensors import webhook_build_sensor

DELIVERIES_DDL = """
create schema if not exists stripe_raw;
create table stripe_raw.webhook_deliveries (
    received_at timestamptz not null default now(),
    event_id text null,
    event_type text null,
    outcome text not null,
    reason text null
)
"""


def _deliver(url: str, *rows: tuple[str, str, str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for received_at, event_id, outcome in rows:
            conn.execute(
                "insert into stripe_raw.webhook_deliveries (received_at, event_id, event_type,"
                " outcome) values (%s, %s, 'customer.updated', %s)",
                (received_at, event_id, outcome),
            )


@pytest.fixture
def deliveries_url(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(DELIVERIES_DDL)
    return database_url


def _evaluate(instance: dg.DagsterInstance, url: str, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"warehouse": WarehouseResource(database_url=url)},
    )
    return webhook_build_sensor(context)


def test_sensor_requests_one_build_per_burst_and_advances_its_cursor(deliveries_url: str) -> None:
    _deliver(
        deliveries_url,
        ("2026-11-20T12:00:00Z", "evt_1", "applied"),
        ("2026-11-20T12:00:00Z", "evt_2", "applied"),
        ("2026-11-20T12:00:01Z", "evt_3", "duplicate"),
    )
    with dg.DagsterInstance.ephemeral() as instance:
        first = _evaluate(instance, deliveries_url, None)
        assert isinstance(first, dg.SensorResult)
        assert len(first.run_requests) == 1, "one run for the whole burst"
        assert first.run_requests[0].tags["stripe_sync/deliveries"] == "2"
        assert first.cursor and "evt_2" in first.cursor

        again = _evaluate(instance, deliveries_url, first.cursor)
        assert isinstance(again, dg.SkipReason), "nothing new since the cursor"

        _deliver(deliveries_url, ("2026-11-20T12:00:00Z", "evt_9", "applied"))
        tie = _evaluate(instance, deliveries_url, first.cursor)
        assert isinstance(tie, dg.SensorResult), "same timestamp, later event id: still new"
        assert tie.run_requests[0].run_key != first.run_requests[0].run_key


def test_sensor_ignores_rejected_and_duplicate_deliveries(deliveries_url: str) -> None:
    _deliver(
        deliveries_url,
        ("2026-11-20T12:00:00Z", None, "rejected"),
        ("2026-11-20T12:00:01Z", "evt_1", "duplicate"),
    )
    with dg.DagsterInstance.ephemeral() as instance:
        assert isinstance(_evaluate(instance, deliveries_url, None), dg.SkipReason)


def test_sensor_waits_while_a_build_is_in_progress(deliveries_url: str) -> None:
    _deliver(deliveries_url, ("2026-11-20T12:00:00Z", "evt_1", "applied"))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.create_run_for_job(
            job_def=defs.resolve_job_def("stripe_build"), status=dg.DagsterRunStatus.STARTED
        )
        result = _evaluate(instance, deliveries_url, None)
        assert isinstance(result, dg.SkipReason)
        assert "already queued or running" in result.skip_message


def test_sensor_skips_when_webhooks_were_never_served(database_url: str) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        result = _evaluate(instance, database_url, None)
    assert isinstance(result, dg.SkipReason)
