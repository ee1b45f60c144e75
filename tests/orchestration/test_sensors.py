"""The webhook sensor: a build when deliveries land, one per burst, none while one is pending."""

from __future__ import annotations

import json
import threading

import dagster as dg
import psycopg
import pytest

from orchestration.defs.definitions import defs
from orchestration.defs.resources import WarehouseResource
from orchestration.defs.sensors import webhook_build_sensor
from orchestration.transform.resident import COVERED_ASSET, COVERED_SEQ, RESIDENT_LOCK
from orchestration.webhooks.store import ensure_webhook_tables


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
        ensure_webhook_tables(conn)
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
        assert json.loads(first.cursor) == {"seq": 3}, "past the newest row, whatever its fate"

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
            job_def=defs.resolve_job_def("stripe_build_job"), status=dg.DagsterRunStatus.STARTED
        )
        result = _evaluate(instance, deliveries_url, None)
        assert isinstance(result, dg.SkipReason)
        assert "already queued or running" in result.skip_message


def _resident_build(instance: dg.DagsterInstance, covered: int) -> None:
    """What a resident build records: customer_fields built with the deliveries it covered."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=dg.AssetKey(list(COVERED_ASSET)),
            metadata={COVERED_SEQ: dg.MetadataValue.int(covered)},
        )
    )


def test_sensor_leaves_deliveries_to_a_running_resident_builder(
    deliveries_url: str, database_factory
) -> None:
    _deliver(
        deliveries_url,
        ("2026-11-20T12:00:00Z", "evt_1", "applied"),
        ("2026-11-20T12:00:01Z", "evt_2", "applied"),
    )
    with dg.DagsterInstance.ephemeral() as instance:
        with psycopg.connect(database_factory(), autocommit=True) as elsewhere:
            # A builder of another database on the same server is not this warehouse's.
            elsewhere.execute("select pg_advisory_lock(%s, %s)", RESIDENT_LOCK)
            assert _evaluate(instance, deliveries_url, None).run_requests
        with psycopg.connect(deliveries_url, autocommit=True) as builder:
            # What `webhooks serve`'s builder holds for as long as it lives.
            builder.execute("select pg_advisory_lock(%s, %s)", RESIDENT_LOCK)
            deferred = _evaluate(instance, deliveries_url, None)
            assert isinstance(deferred, dg.SensorResult)
            assert not deferred.run_requests, "the resident builder builds these itself"
            assert deferred.cursor is None, "nothing is built yet: nothing is passed"
            _resident_build(instance, covered=1)
            moved = _evaluate(instance, deliveries_url, deferred.cursor)
            assert not moved.run_requests
            assert json.loads(moved.cursor) == {"seq": 1}, "up to what the builder built"
        # The builder is gone before it built evt_2 (its lock went with its connection): the
        # sensor's runs take over from where its builds ended.
        resumed = _evaluate(instance, deliveries_url, moved.cursor)
        assert isinstance(resumed, dg.SensorResult)
        assert resumed.run_requests[0].tags["stripe_sync/deliveries"] == "1"


def test_sensor_skips_when_webhooks_were_never_served(database_url: str) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        result = _evaluate(instance, database_url, None)
    assert isinstance(result, dg.SkipReason)


def test_sensor_counts_a_delivery_that_commits_after_a_newer_one(deliveries_url: str) -> None:
    """A delivery whose transaction started first (a slow re-fetch) commits after a later one:
    it is counted, not left behind the cursor until the next delivery."""
    with psycopg.connect(deliveries_url) as slow, dg.DagsterInstance.ephemeral() as instance:
        slow.execute(
            "insert into stripe_raw.webhook_deliveries (event_id, event_type, outcome)"
            " values ('evt_slow', 'customer.updated', 'applied')"
        )  # not committed yet
        with psycopg.connect(deliveries_url, autocommit=True) as fast:
            fast.execute(
                "insert into stripe_raw.webhook_deliveries (event_id, event_type, outcome)"
                " values ('evt_fast', 'customer.updated', 'applied')"
            )
        results: list[object] = []
        sensor = threading.Thread(
            target=lambda: results.append(_evaluate(instance, deliveries_url, None))
        )
        sensor.start()
        while sensor.is_alive() and not _waits_on_a_lock(deliveries_url):
            sensor.join(0.01)
        slow.commit()
        sensor.join()
        first = results[0]
        assert isinstance(first, dg.SensorResult)
        later = _evaluate(instance, deliveries_url, first.cursor)
        counted = int(first.run_requests[0].tags["stripe_sync/deliveries"])
        if isinstance(later, dg.SensorResult):
            counted += int(later.run_requests[0].tags["stripe_sync/deliveries"])
        assert counted == 2, "the slow delivery was skipped"


def test_sensor_takes_over_a_cursor_of_the_previous_format(deliveries_url: str) -> None:
    _deliver(
        deliveries_url,
        ("2026-11-20T12:00:00Z", "evt_1", "applied"),
        ("2026-11-20T12:00:05Z", "evt_2", "applied"),
    )
    old = json.dumps({"received_at": "2026-11-20T12:00:01+00:00", "event_id": "evt_1"})
    with dg.DagsterInstance.ephemeral() as instance:
        result = _evaluate(instance, deliveries_url, old)
        assert isinstance(result, dg.SensorResult)
        assert result.run_requests[0].tags["stripe_sync/deliveries"] == "1"
        assert isinstance(_evaluate(instance, deliveries_url, result.cursor), dg.SkipReason)


def _waits_on_a_lock(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return bool(
            conn.execute(
                "select count(*) from pg_stat_activity where datname = current_database()"
                " and wait_event_type = 'Lock'"
            ).fetchone()[0]
        )
