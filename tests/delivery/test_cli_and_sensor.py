"""`stripe-sync segments deliver`, the dead letters in `stripe-sync status`, and the Dagster
sensor and job that deliver when SEGMENT_WEBHOOK_URL is set."""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest

from orchestration.defs.delivery import segment_delivery_job, segment_delivery_sensor
from orchestration.defs.resources import WarehouseResource
from orchestration.extract import loader
from tests.cli.helpers import run_cli
from tests.delivery.conftest import add_changes
from tests.delivery.receiver import SECRET, Receiver, serve


def test_cli_delivers_pending_changes_and_prints_one_line(feed_url: str) -> None:
    add_changes(feed_url, 4)
    env = {"DATABASE_URL": feed_url, "SEGMENT_WEBHOOK_SECRET": SECRET}
    with serve(Receiver()) as rcv:
        done = run_cli("segments", "deliver", "--url", rcv.url, env=env)
        again = run_cli("segments", "deliver", env={**env, "SEGMENT_WEBHOOK_URL": rcv.url})

    assert done.code == 0, done.stderr
    origin = rcv.url.split("/hooks")[0]
    assert done.stdout == (
        f"segment changes to {origin}: 4 delivered, 0 pending (cursor at change 4)\n"
    )
    assert again.code == 0 and "0 delivered" in again.stdout
    assert rcv.received_ids() == [1, 2, 3, 4]
    for output in (done.stdout + done.stderr, again.stdout + again.stderr):
        assert SECRET not in output and "abc123" not in output


def test_cli_shows_dead_letters_in_status_and_fails_while_the_receiver_fails(
    feed_url: str,
) -> None:
    add_changes(feed_url, 3)
    env = {"DATABASE_URL": feed_url, "SEGMENT_WEBHOOK_SECRET": SECRET}
    with serve(Receiver(respond=lambda cid, seen: 422 if cid == 2 else 200)) as rcv:
        done = run_cli("segments", "deliver", "--url", rcv.url, env=env)
    assert done.code == 0, done.stderr
    assert "3 delivered" not in done.stdout and "2 delivered, 1 dead-lettered" in done.stdout

    with psycopg.connect(feed_url, autocommit=True) as conn:  # a sync ran, as it would have
        loader.ensure_raw_tables(conn)
        conn.execute(
            "insert into stripe_raw.sync_state (object, livemode, account_id, status,"
            " last_success_at) values ('customers', false, 'acct_1', 'ok', now())"
        )
    status = run_cli("status", env=env)
    assert "1 dead letter(s)" in status.stdout, status.stdout + status.stderr
    assert "dead letter: change 2" in status.stdout and "HTTP 422" in status.stdout

    add_changes(feed_url, 1)
    with serve(Receiver()) as gone:
        url = gone.url
    failed = run_cli("segments", "deliver", "--url", url, env=env, timeout=180)
    assert failed.code == 1
    # Another URL is another receiver: it starts at the first change.
    assert failed.stderr.startswith("error: change 1 not delivered: ConnectError")
    assert len(failed.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["--url", "http://hooks.example.com/x"],
            {"SEGMENT_WEBHOOK_SECRET": SECRET},
            "error: the segment webhook URL http://hooks.example.com is plain http outside"
            " localhost. Use https:// (http:// only for localhost, 127.0.0.1 or ::1).",
        ),
        (
            [],
            {"SEGMENT_WEBHOOK_SECRET": SECRET},
            "error: no receiver for segment changes. Pass --url https://… or set"
            " SEGMENT_WEBHOOK_URL.",
        ),
        (
            ["--url", "https://hooks.example.com/x"],
            {},
            "error: SEGMENT_WEBHOOK_SECRET is missing or shorter than 16 characters.",
        ),
    ],
    ids=["http-outside-localhost", "no-url", "no-secret"],
)
def test_cli_refuses_an_unusable_receiver_in_one_line(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    done = run_cli("segments", "deliver", *args, env=env)
    assert done.code == 1
    assert done.stderr.startswith(expected)
    assert len(done.stderr.strip().splitlines()) == 1 and SECRET not in done.stderr


def _evaluate(instance: dg.DagsterInstance, url: str) -> dg.RunRequest | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance, resources={"warehouse": WarehouseResource(database_url=url)}
    )
    return segment_delivery_sensor(context)


def test_sensor_is_off_without_segment_webhook_url(
    feed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEGMENT_WEBHOOK_URL", raising=False)
    add_changes(feed_url, 1)
    with dg.DagsterInstance.ephemeral() as instance:
        skipped = _evaluate(instance, feed_url)
    assert isinstance(skipped, dg.SkipReason)
    assert "SEGMENT_WEBHOOK_URL is not set" in (skipped.skip_message or "")


def test_sensor_starts_a_delivery_run_that_delivers_then_waits(
    feed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_changes(feed_url, 3)
    monkeypatch.setenv("SEGMENT_WEBHOOK_SECRET", SECRET)
    with serve(Receiver(respond=lambda cid, seen: 400 if cid == 3 else 200)) as rcv:
        monkeypatch.setenv("SEGMENT_WEBHOOK_URL", rcv.url)
        with dg.DagsterInstance.ephemeral() as instance:
            request = _evaluate(instance, feed_url)
            assert isinstance(request, dg.RunRequest)
            assert request.tags["stripe_sync/pending"] == "3"
            run = segment_delivery_job.execute_in_process(
                instance=instance,
                resources={"warehouse": WarehouseResource(database_url=feed_url)},
            )
            assert run.success
            after = _evaluate(instance, feed_url)
    assert isinstance(after, dg.SkipReason) and "no segment changes" in (after.skip_message or "")
    assert rcv.received_ids() == [1, 2, 3]
    (step,) = [e for e in run.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = step.event_specific_data.metadata
    assert metadata["delivered"].value == 2 and metadata["dead_lettered"].value == 1
    assert "| 3 | 400 | HTTP 400 Bad Request | 1 |" in metadata["dead_letters"].value


def test_sensor_backs_off_after_a_failed_run(
    feed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_changes(feed_url, 2)
    monkeypatch.setenv("SEGMENT_WEBHOOK_SECRET", SECRET)
    with serve(Receiver(respond=lambda cid, seen: 404)) as rcv:
        monkeypatch.setenv("SEGMENT_WEBHOOK_URL", rcv.url)
        with dg.DagsterInstance.ephemeral() as instance:
            run = segment_delivery_job.execute_in_process(
                instance=instance,
                resources={"warehouse": WarehouseResource(database_url=feed_url)},
                raise_on_error=False,
            )
            waiting = _evaluate(instance, feed_url)
    assert not run.success
    assert isinstance(waiting, dg.SkipReason)
    assert "retrying after" in (waiting.skip_message or "")
    assert "HTTP 404" in (waiting.skip_message or "")
    with psycopg.connect(feed_url) as conn:
        assert conn.execute(
            "select count(*) from stripe_raw.segment_delivery_dead_letters"
        ).fetchone() == (0,)
