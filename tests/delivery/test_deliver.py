"""Delivering the change feed to a local receiver: order, cursor, retries, dead letters, races."""

from __future__ import annotations

import threading
from datetime import datetime

import psycopg
import pytest

from orchestration.delivery import (
    Endpoint,
    FeedMissingError,
    RetryPolicy,
    count_dead_letters,
    deliver_changes,
    delivery_status,
    list_dead_letters,
)
from tests.delivery.conftest import add_changes
from tests.delivery.receiver import SECRET, Receiver, serve

# Quick back-off: the retry logic is the same, the test waits milliseconds.
FAST = RetryPolicy(base_delay=0.005, max_delay=0.02)


def _cursor(database_url: str, endpoint: Endpoint) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "select last_change_id from stripe_raw.segment_delivery_state where endpoint_id = %s",
            (endpoint.id,),
        ).fetchone()[0]


def test_delivers_every_change_in_order_signed_with_the_feed_row(
    feed_url: str, receiver: Receiver
) -> None:
    ids = add_changes(feed_url, 7)
    result = deliver_changes(feed_url, Endpoint(receiver.url, SECRET), policy=FAST)

    assert receiver.received_ids() == ids
    assert receiver.unsigned == 0
    assert (result.delivered, result.dead_lettered, result.pending) == (7, 0, 0)
    assert result.last_change_id == 7 and result.stopped is None
    with psycopg.connect(feed_url) as conn:
        first = conn.execute(
            "select * from stripe_segments.segment_changes where change_id = 1"
        ).fetchone()
    body = receiver.deliveries[0].body
    assert list(body) == [
        "change_id",
        "segment",
        "stripe_customer_id",
        "customer_email",
        "change",
        "changed_at",
        "detected_at",
        "livemode",
    ]
    assert body["stripe_customer_id"] == first[2] and body["change"] == first[4]
    assert body["changed_at"] == "2026-11-20T12:01:00Z"
    assert datetime.fromisoformat(body["detected_at"]) == first[6]
    assert receiver.deliveries[4].body["changed_at"] is None  # change 5 has no real moment


def test_cursor_persists_across_runs_so_nothing_is_delivered_twice(
    feed_url: str, receiver: Receiver
) -> None:
    endpoint = Endpoint(receiver.url, SECRET)
    add_changes(feed_url, 3)
    assert deliver_changes(feed_url, endpoint, policy=FAST).delivered == 3
    assert deliver_changes(feed_url, endpoint, policy=FAST).delivered == 0
    add_changes(feed_url, 2)
    again = deliver_changes(feed_url, endpoint, policy=FAST)

    assert again.delivered == 2
    assert receiver.received_ids() == [1, 2, 3, 4, 5]
    assert _cursor(feed_url, endpoint) == 5


def test_max_changes_stops_a_run_and_the_next_run_resumes(
    feed_url: str, receiver: Receiver
) -> None:
    endpoint = Endpoint(receiver.url, SECRET)
    add_changes(feed_url, 5)
    first = deliver_changes(feed_url, endpoint, policy=FAST, max_changes=2)
    rest = deliver_changes(feed_url, endpoint, policy=FAST)

    assert (first.delivered, first.pending, rest.delivered) == (2, 3, 3)
    assert first.stopped is not None
    assert receiver.received_ids() == [1, 2, 3, 4, 5]


def test_a_rotated_secret_keeps_the_cursor_and_another_url_starts_over(
    feed_url: str, receiver: Receiver
) -> None:
    add_changes(feed_url, 3)
    deliver_changes(feed_url, Endpoint(receiver.url, SECRET), policy=FAST)
    receiver.secret = SECRET + "-rotated"
    add_changes(feed_url, 1)
    deliver_changes(feed_url, Endpoint(receiver.url, receiver.secret), policy=FAST)
    assert receiver.received_ids() == [1, 2, 3, 4]

    with serve(Receiver()) as other:
        result = deliver_changes(feed_url, Endpoint(other.url, SECRET), policy=FAST)
    assert result.delivered == 4 and other.received_ids() == [1, 2, 3, 4]


def test_a_500_is_retried_and_only_the_retried_change_arrives_twice(feed_url: str) -> None:
    add_changes(feed_url, 4)
    with serve(Receiver(respond=lambda cid, seen: 500 if cid == 2 and seen < 2 else 200)) as rcv:
        result = deliver_changes(feed_url, Endpoint(rcv.url, SECRET), policy=FAST)

    assert rcv.received_ids() == [1, 2, 2, 2, 3, 4]
    assert [d.attempt for d in rcv.deliveries if d.change_id == 2] == [1, 2, 3]
    assert rcv.delivered_ids() == [1, 2, 3, 4]
    assert (result.delivered, result.posts, result.dead_lettered) == (4, 6, 0)


def test_an_unavailable_receiver_stops_the_run_without_moving_the_cursor(feed_url: str) -> None:
    """An outage is no change's fault: nothing is dead-lettered, the next run resumes."""
    add_changes(feed_url, 3)
    down = {"down": True}
    respond = lambda cid, seen: 503 if down["down"] and cid == 2 else 200  # noqa: E731
    with serve(Receiver(respond=respond)) as rcv:
        endpoint = Endpoint(rcv.url, SECRET)
        stopped = deliver_changes(feed_url, endpoint, policy=FAST)
        assert (stopped.delivered, stopped.dead_lettered, stopped.pending) == (1, 0, 2)
        assert "503" in (stopped.stopped or "")
        assert _cursor(feed_url, endpoint) == 1
        down["down"] = False
        resumed = deliver_changes(feed_url, endpoint, policy=FAST)

    assert resumed.delivered == 2 and count_dead_letters_of(feed_url) == 0
    assert rcv.delivered_ids() == [1, 2, 3]
    assert rcv.received_ids().count(2) == FAST.max_attempts + 1


def test_an_unreachable_receiver_stops_the_run(feed_url: str) -> None:
    add_changes(feed_url, 2)
    with serve(Receiver()) as rcv:
        url = rcv.url  # the port is free again once the receiver stopped
    result = deliver_changes(
        feed_url, Endpoint(url, SECRET), policy=RetryPolicy(max_attempts=2, base_delay=0.001)
    )
    assert (result.delivered, result.dead_lettered, result.pending) == (0, 0, 2)
    assert result.stopped and "ConnectError" in result.stopped
    assert "token=abc123" not in result.stopped


def test_a_4xx_dead_letters_the_change_and_the_feed_continues(feed_url: str) -> None:
    add_changes(feed_url, 5)
    with serve(Receiver(respond=lambda cid, seen: 422 if cid == 3 else 200)) as rcv:
        endpoint = Endpoint(rcv.url, SECRET)
        result = deliver_changes(feed_url, endpoint, policy=FAST)
        again = deliver_changes(feed_url, endpoint, policy=FAST)

    assert rcv.received_ids() == [1, 2, 3, 4, 5]  # 3 was not retried: a 422 is final
    assert (result.delivered, result.dead_lettered, result.dead_letter_ids) == (4, 1, [3])
    assert again.delivered == again.dead_lettered == 0
    with psycopg.connect(feed_url) as conn:
        (letter,) = list_dead_letters(conn)
        assert count_dead_letters(conn) == 1
        (status,) = delivery_status(conn)
    assert (letter.change_id, letter.last_status, letter.attempts) == (3, 422, 1)
    assert letter.reason == "HTTP 422 Unprocessable Entity"
    assert letter.payload["stripe_customer_id"] == "cus_0003"
    assert letter.endpoint_name == endpoint.name == rcv.url.split("/hooks")[0]
    assert (status.last_change_id, status.dead_letter_count, status.delivered_count) == (5, 1, 4)
    assert status.pending == 0


def test_a_change_failing_with_500_is_dead_lettered_after_n_attempts_across_runs(
    feed_url: str,
) -> None:
    add_changes(feed_url, 3)
    policy = RetryPolicy(max_attempts=2, base_delay=0.001, dead_letter_after=3)
    with serve(Receiver(respond=lambda cid, seen: 500 if cid == 2 else 200)) as rcv:
        endpoint = Endpoint(rcv.url, SECRET)
        first = deliver_changes(feed_url, endpoint, policy=policy)
        second = deliver_changes(feed_url, endpoint, policy=policy)

    assert (first.delivered, first.dead_lettered, first.last_change_id) == (1, 0, 1)
    assert (second.delivered, second.dead_lettered, second.last_change_id) == (1, 1, 3)
    assert rcv.received_ids() == [1, 2, 2, 2, 3]
    with psycopg.connect(feed_url) as conn:
        (letter,) = list_dead_letters(conn)
    assert (letter.change_id, letter.attempts, letter.last_status) == (2, 3, 500)


def test_a_receiver_refusing_the_signature_stops_without_dead_letters(feed_url: str) -> None:
    """401 says the secret is wrong, not that the change is: fixing the secret resumes."""
    add_changes(feed_url, 2)
    with serve(Receiver(secret=SECRET + "-other")) as rcv:
        result = deliver_changes(feed_url, Endpoint(rcv.url, SECRET), policy=FAST)
        assert rcv.unsigned == 1  # not retried: no retry fixes a secret
        assert (result.delivered, result.dead_lettered, result.pending) == (0, 0, 2)
        assert "401" in (result.stopped or "")
        fixed = deliver_changes(feed_url, Endpoint(rcv.url, SECRET + "-other"), policy=FAST)
    assert fixed.delivered == 2 and count_dead_letters_of(feed_url) == 0


def test_the_secret_and_the_url_s_token_are_in_no_table(feed_url: str) -> None:
    add_changes(feed_url, 4)
    respond = lambda cid, seen: {2: 400, 3: 500}.get(cid, 200) if seen == 0 else 200  # noqa: E731
    with serve(Receiver(respond=respond)) as rcv:
        deliver_changes(feed_url, Endpoint(rcv.url, SECRET), policy=FAST)
    with serve(Receiver()) as gone:
        url = gone.url
    deliver_changes(feed_url, Endpoint(url, SECRET), policy=RetryPolicy(max_attempts=1))

    with psycopg.connect(feed_url) as conn:
        tables = conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables"
            " where table_schema = 'stripe_raw'"
        ).fetchall()
        assert len(tables) == 2
        dump = "".join(
            conn.execute(
                f"select coalesce(string_agg(t::text, ''), '') from {name} as t"
            ).fetchone()[0]
            for (name,) in tables
        )
    assert "HTTP 400" in dump and "ConnectError" in dump  # the dump does hold the rows
    assert SECRET not in dump
    assert "abc123" not in dump and "/hooks" not in dump


def test_two_deliverers_at_once_deliver_each_change_once_in_order(feed_url: str) -> None:
    ids = add_changes(feed_url, 40)
    results = []
    errors: list[BaseException] = []
    with serve(Receiver(delay=0.002)) as rcv:
        endpoint = Endpoint(rcv.url, SECRET)

        def run() -> None:
            try:
                results.append(deliver_changes(feed_url, endpoint, policy=FAST))
            except BaseException as exc:  # surfaced below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert not errors
    assert rcv.received_ids() == ids
    assert sum(result.delivered for result in results) == 40
    assert _cursor(feed_url, endpoint) == 40


def test_before_the_first_build_delivery_says_to_build(database_url: str) -> None:
    with pytest.raises(FeedMissingError) as caught:
        deliver_changes(database_url, Endpoint("https://hooks.example.com/x", SECRET))
    assert caught.value.one_line() == (
        "stripe_segments.segment_changes does not exist yet. Run `stripe-sync build` first."
    )
    with psycopg.connect(database_url) as conn:
        assert list_dead_letters(conn) == [] and delivery_status(conn) == []


def count_dead_letters_of(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return count_dead_letters(conn)
