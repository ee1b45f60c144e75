"""A database outage during a delivery is answered 5xx, so Stripe retries; the retry after
recovery lands the event exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
from psycopg import sql

from orchestration.core.warehouse import parse_database_url, with_database
from orchestration.webhooks.server import HEALTH_PATH, create_app
from tests.webhooks.conftest import ENDPOINT_WHSEC, RunningServer, customer_event, post, rows


def _admin(database_url: str) -> psycopg.Connection:
    return psycopg.connect(with_database(database_url, "postgres"), autocommit=True)


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


@contextmanager
def database_gone(database_url: str) -> Iterator[None]:
    """The database disappears (its connections killed, then renamed away) for the block."""
    name = parse_database_url(database_url).dbname
    with _admin(database_url) as admin:

        def renamed() -> bool:
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s",
                (name,),
            )
            try:
                admin.execute(
                    sql.SQL("alter database {} rename to {}").format(
                        sql.Identifier(name), sql.Identifier(name + "_down")
                    )
                )
            except psycopg.errors.ObjectInUse:
                return False
            return True

        _wait_for(renamed)
        try:
            yield
        finally:
            admin.execute(
                sql.SQL("alter database {} rename to {}").format(
                    sql.Identifier(name + "_down"), sql.Identifier(name)
                )
            )


def test_delivery_while_the_database_is_gone_gets_5xx_then_the_retry_lands_once(http, database_url):
    assert post(http, customer_event("evt_before")).status_code == 200
    during = customer_event("evt_during")  # one event; every post below is a delivery of it
    with database_gone(database_url):
        # The pooled connection is dead, and reconnecting fails: both are 503, never 2xx.
        assert post(http, during).status_code == 503
        assert post(http, during).status_code == 503
        assert http.get(HEALTH_PATH).status_code == 503
        # Refusals do not depend on the database.
        assert post(http, customer_event("evt_x"), whsec="whsec_wrong_0000").status_code == 400
    retry = post(http, during)  # Stripe's retry, signed anew
    assert (retry.status_code, retry.json()["outcome"]) == (200, "applied")
    assert post(http, during).json()["outcome"] == "duplicate"
    assert rows(database_url, "select id from stripe_raw.events order by id") == [
        ("evt_before",),
        ("evt_during",),
    ]
    assert http.get(HEALTH_PATH).status_code == 200


def test_connection_killed_in_the_middle_of_the_transaction_gets_5xx_and_commits_nothing(
    database_url, stripe_api
):
    name = parse_database_url(database_url).dbname
    app = create_app(database_url, [ENDPOINT_WHSEC], stripe_api, writers=1)
    with RunningServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert post(client, customer_event("evt_first", "cus_other")).status_code == 200
        with psycopg.connect(database_url) as blocker, _admin(database_url) as admin:
            # Hold the customers table: the delivery's transaction stores its event, then waits.
            blocker.execute("lock table stripe_raw.customers in access exclusive mode")
            cut = customer_event("evt_cut")
            answer: list[httpx.Response] = []
            sender = threading.Thread(target=lambda: answer.append(post(client, cut)))
            sender.start()
            waiting = (
                "select pid from pg_stat_activity where datname = %s and wait_event_type = 'Lock'"
            )
            _wait_for(lambda: admin.execute(waiting, (name,)).fetchone() is not None)
            pid = admin.execute(waiting, (name,)).fetchone()[0]
            admin.execute("select pg_terminate_backend(%s)", (pid,))
            sender.join(timeout=30)
            blocker.rollback()
        assert answer[0].status_code == 503
        assert rows(
            database_url, "select count(*) from stripe_raw.events where id = 'evt_cut'"
        ) == [(0,)]
        retry = post(client, cut)
        assert (retry.status_code, retry.json()["outcome"]) == (200, "applied")
    assert rows(database_url, "select id from stripe_raw.events order by id") == [
        ("evt_cut",),
        ("evt_first",),
    ]
    assert rows(database_url, "select id from stripe_raw.customers order by id") == [
        ("cus_other",),
        ("cus_webhook1",),
    ]
