"""Writers of one object at once (the sync's event replay, webhook deliveries): whatever the
interleaving of their re-fetches and commits, stripe_raw ends with Stripe's current state."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from orchestration.extract import events, sync_stripe
from orchestration.extract.client import StripeApi
from orchestration.webhooks.store import ensure_webhook_tables
from tests.extract.races import Writer, apply_as, change_customer, race_same_second_events
from tests.extract.stripe_proxy import StripeProxy


def waits_on_a_lock(database_url: str, pid: int) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", (pid,)
        ).fetchone()
    return bool(row and row[0])


def wait_until(condition: Callable[[], bool]) -> None:
    """Polls a condition that must come true (each caller's includes "the thread ended")."""
    while not condition():
        time.sleep(0.01)


def stored_email(database_url: str, customer_id: str) -> str:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "select data ->> 'email' from stripe_raw.customers where id = %s", (customer_id,)
        ).fetchone()[0]


@pytest.mark.parametrize("path", ["sync replay", "webhook receiver"])
@pytest.mark.parametrize("lag", [0, 1], ids=["date-same-second", "date-1s-behind"])
@pytest.mark.parametrize("held", [1, 2], ids=["first-read-held", "re-read-held"])
def test_a_refetch_returned_after_another_writer_committed_does_not_win(
    emulator_factory, database_url: str, path: str, lag: int, held: int
) -> None:
    """Two events of one customer in the same second. Writer A's is in another API version, so
    A re-fetches; that answer is read at Stripe before B's change but only returned once writer
    B (applying B's own event) committed or is waiting for A. The Date header says the event's
    second, or the second before it. `held` picks which of A's reads comes back late: its first,
    or the re-read that a Date second not past the event's second asks for."""
    emu = emulator_factory(customers=20, seed=61, now=int(time.time()))
    with (
        StripeProxy(emu, lag=lambda: lag).running() as proxy_a,
        StripeProxy(emu, lag=lambda: lag).running() as proxy_b,
    ):
        sync_stripe(database_url, emu.test_key, api_base=proxy_b.url, max_rps=1000)
        emu.advance_clock(10)  # both events fall in this second
        customer_id = sorted(emu.objects("customers"))[0]
        read_by_a = threading.Event()
        release_a = threading.Event()
        reads = 0

        def hold_one_read_of_a(request_path: str) -> None:
            nonlocal reads
            if request_path.startswith(f"/v1/customers/{customer_id}"):
                reads += 1
                if reads == held:
                    read_by_a.set()
                    release_a.wait()

        proxy_a.hook = hold_one_read_of_a
        event_a = change_customer(emu, customer_id, "a@example.org", other_version=True)
        with (
            psycopg.connect(database_url, autocommit=True) as conn_a,
            psycopg.connect(database_url, autocommit=True) as conn_b,
        ):
            if path == "webhook receiver":
                ensure_webhook_tables(conn_a)
            client_a = StripeApi(emu.test_key, proxy_a.url, max_rps=1000)
            client_b = StripeApi(emu.test_key, proxy_b.url, max_rps=1000)
            writer_a = Writer(lambda: apply_as(path, conn_a, client_a, [event_a]))
            writer_a.start()
            wait_until(lambda: read_by_a.is_set() or not writer_a.is_alive())
            if not read_by_a.is_set():
                writer_a.finish()
                pytest.fail(f"writer A made {reads} read(s) of the customer, not {held}")
            # Stripe changes the customer after A's read; B applies that change's event.
            event_b = change_customer(emu, customer_id, "b@example.org", other_version=False)
            writer_b = Writer(lambda: apply_as(path, conn_b, client_b, [event_b]))
            pid_b = conn_b.info.backend_pid
            writer_b.start()
            wait_until(lambda: not writer_b.is_alive() or waits_on_a_lock(database_url, pid_b))
            release_a.set()
            writer_a.finish()
            writer_b.finish()
    assert emu.objects("customers")[customer_id]["email"] == "b@example.org"
    assert stored_email(database_url, customer_id) == "b@example.org"


RANDOM_ROUNDS = 100
# How late the proxy returns an answer it already read: mostly at once, sometimes late enough
# for another writer's whole re-fetch and commit to fit in between.
ANSWER_DELAYS = (0.0, 0.005, 0.05)


def test_concurrent_writers_of_same_second_events_end_with_stripes_state(
    emulator_factory, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3 writers × 2 customers × 3 changes in one second, 100 rounds, Date lagging 0 or 1 s and
    answers returned up to 50 ms late at random: every round ends with Stripe's state. The
    re-read delay is cut to nothing: rounds stay fast, and what this checks is the locks (the
    last writer to lock an object re-reads it after every change it was told of)."""
    monkeypatch.setattr(events, "REREAD_DELAY", 0.0)
    rng = random.Random(62)  # noqa: S311 - reproducible, not secret
    emu = emulator_factory(customers=20, seed=62, now=int(time.time()))
    with StripeProxy(emu, lag=lambda: rng.choice([0, 1])).running() as proxy:
        proxy.hook = lambda _path: time.sleep(rng.choice(ANSWER_DELAYS))
        sync_stripe(database_url, emu.test_key, api_base=proxy.url, max_rps=1000)
        stale = {}
        for round_ in range(RANDOM_ROUNDS):
            wrong = race_same_second_events(
                emu, database_url, proxy.url, rng, writers=3, objects=2, changes=3
            )
            if wrong:
                stale[round_] = wrong
    assert not stale, f"{len(stale)} of {RANDOM_ROUNDS} rounds left an older state: {stale}"
