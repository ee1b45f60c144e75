"""`status` reads webhook health from the delivery log, and copes when there is none."""

from __future__ import annotations

import time

import psycopg

from orchestration.webhooks.health import read_webhook_health, render_webhook_health
from tests.webhooks.conftest import customer_event, flush_rejections, post


def test_health_without_the_delivery_log_says_never_received(database_url):
    with psycopg.connect(database_url) as conn:
        health = read_webhook_health(conn)
    assert health["receiving"] is False
    assert health["events_last_hour"] == 0
    assert "never received" in render_webhook_health(health)


def test_health_counts_events_duplicates_and_rejections(http, database_url):
    post(http, customer_event("evt_h1"))
    second = customer_event("evt_h2", "cus_2")
    post(http, second)
    post(http, second)
    post(http, customer_event("evt_h3"), timestamp=int(time.time()) - 900)
    flush_rejections(http)
    with psycopg.connect(database_url) as conn:
        health = read_webhook_health(conn)
    assert health["receiving"] is True
    assert health["last_event_at"] is not None
    assert (health["events_last_hour"], health["duplicates_last_hour"]) == (2, 1)
    assert (health["rejected_last_hour"], health["rejected_last_day"]) == (1, 1)
    assert health["last_rejected_reason"] == "stale timestamp (signed more than 300 s ago)"
    text = render_webhook_health(health)
    assert "2 new, 1 duplicate" in text
    assert "1 in the last hour" in text
