"""The endpoint spends little on what cannot be Stripe: no body is read before the signature
header passes, slow senders are dropped, connections are limited, unverified bodies share a byte
budget, and refusals become one summary row per reason instead of one row each."""

from __future__ import annotations

import json
import logging
import select
import socket
import time
from typing import Any

import httpx
import psycopg
import pytest

from orchestration.webhooks.health import read_webhook_health
from orchestration.webhooks.server import HEALTH_PATH, WEBHOOK_PATH, _OncePerMinute, create_app
from tests.webhooks.conftest import (
    ENDPOINT_WHSEC,
    RunningServer,
    customer_event,
    flush_rejections,
    post,
    rows,
    signed,
)

# A safety net, not a measurement: a server that never answers fails the test after this.
PATIENCE = 30.0
FAKE_V1 = "0" * 64


def _head(headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST {WEBHOOK_PATH} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _connect(server: RunningServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _json_body(response: bytes) -> Any:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


@pytest.fixture
def app(database_url, stripe_api):
    # A body deadline far beyond PATIENCE: a server that waited for the body would fail the test.
    return create_app(database_url, [ENDPOINT_WHSEC], stripe_api, body_timeout=PATIENCE * 4)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing Stripe-Signature header"),
        ({"Stripe-Signature": "garbage"}, "malformed Stripe-Signature header"),
        (
            {"Stripe-Signature": f"t={int(time.time()) - 3600},v1={FAKE_V1}"},
            "stale timestamp (signed more than 300 s ago)",
        ),
    ],
    ids=["unsigned", "malformed", "stale"],
)
def test_delivery_that_cannot_be_stripes_is_refused_before_its_body_is_sent(
    app, database_url, headers, reason
):
    # The client announces a 1 MB body and sends none of it: only a server that decides on the
    # headers alone can answer, and it closes the connection rather than read the rest.
    head = _head({"Content-Type": "application/json", **headers}, 1024 * 1024)
    with RunningServer(app) as server, _connect(server) as sock:
        sock.sendall(head)
        response = _until_closed(sock)
    assert _status(response) == 400
    assert _json_body(response) == {"error": reason}
    assert rows(database_url, "select count(*) from stripe_raw.events") == [(0,)]


def test_sender_of_a_slow_body_is_answered_408_and_disconnected(database_url, stripe_api):
    app = create_app(database_url, [ENDPOINT_WHSEC], stripe_api, body_timeout=0.5)
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": f"t={int(time.time())},v1={FAKE_V1}",  # well-formed, so it is read
    }
    with RunningServer(app) as server, _connect(server) as sock:
        sock.sendall(_head(headers, 1000) + b'{"id": ')  # and then nothing more
        response = _until_closed(sock)
    assert _status(response) == 408
    assert _json_body(response) == {"error": "body not received within 0.5 s"}


def _trickle_until_closed(sock: socket.socket) -> bool:
    """Sends one header byte at a time, the way a slowloris client does; True once the server
    closed the connection, False if it still held it after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"a")
        except OSError:
            return True
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            try:
                if not sock.recv(65536):
                    return True
            except OSError:
                return True
    return False


@pytest.mark.parametrize("after_a_response", [False, True], ids=["new", "kept-alive"])
def test_connection_whose_headers_never_complete_is_closed(app, after_a_response):
    with RunningServer(app, header_timeout=0.5) as server, _connect(server) as sock:
        if after_a_response:
            sock.sendall(f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                answer += sock.recv(65536)
        sock.sendall(f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
        assert _trickle_until_closed(sock)


def test_connections_past_the_limit_are_answered_503_until_one_closes(app, database_url):
    with RunningServer(app, limit_concurrency=3, header_timeout=PATIENCE * 4) as server:
        held = [_connect(server) for _ in range(3)]
        for sock in held:
            sock.sendall(b"POST / HTTP/1.1\r\n")  # headers never finished
        with httpx.Client(base_url=server.url, timeout=PATIENCE) as http:
            assert post(http, customer_event("evt_over")).status_code == 503
            for sock in held:
                sock.close()
            deadline = time.monotonic() + PATIENCE
            answer = post(http, customer_event("evt_under"))
            while answer.status_code == 503 and time.monotonic() < deadline:
                answer = post(http, customer_event("evt_under"))  # until the server saw the closes
    assert answer.status_code == 200
    assert rows(database_url, "select id from stripe_raw.events") == [("evt_under",)]


def test_unverified_bodies_share_a_byte_budget_given_back_after_each_request(
    database_url, stripe_api, app_factory
):
    body, _ = signed(customer_event("evt_budget"))
    tight = app_factory(body_budget=len(body) - 1)
    answer = post(tight, customer_event("evt_budget"))
    assert (answer.status_code, answer.json()) == (
        503,
        {"error": "too many request bodies in flight, retry"},
    )
    enough = app_factory(body_budget=len(body))
    assert post(enough, customer_event("evt_budget")).status_code == 200
    assert post(enough, customer_event("evt_budget")).json()["outcome"] == "duplicate"


def test_refusals_are_logged_as_one_row_per_reason_with_a_count(http, database_url):
    for _ in range(30):
        http.post(WEBHOOK_PATH, content=b"x" * 1000, headers={"Content-Type": "application/json"})
    for _ in range(5):
        http.post(WEBHOOK_PATH, content=b"{}", headers={"Content-Type": "text/plain"})
    assert post(http, customer_event("evt_fine")).status_code == 200
    assert rows(database_url, "select count(*) from stripe_raw.webhook_deliveries") == [(1,)]
    flush_rejections(http)
    flush_rejections(http)  # nothing new: no row
    assert rows(
        database_url,
        "select reason, delivery_count from stripe_raw.webhook_deliveries"
        " where outcome = 'rejected' order by reason",
    ) == [("content type is not application/json", 5), ("missing Stripe-Signature header", 30)]
    with psycopg.connect(database_url) as conn:
        health = read_webhook_health(conn)
    assert (health["rejected_last_hour"], health["events_last_hour"]) == (35, 1)


def test_refusals_counted_before_a_shutdown_are_written_by_it(app_factory, database_url):
    http = app_factory()
    for _ in range(3):
        http.post(WEBHOOK_PATH, content=b"{}", headers={"Content-Type": "application/json"})
    http.__exit__(None, None, None)  # the app stops (lifespan): counted refusals are flushed
    assert rows(
        database_url, "select outcome, reason, delivery_count from stripe_raw.webhook_deliveries"
    ) == [("rejected", "missing Stripe-Signature header", 3)]


def test_uvicorns_warnings_about_abusive_traffic_are_logged_once_a_minute_with_a_count():
    quiet = _OncePerMinute()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, message, (), None)

    assert quiet.filter(record("Exceeded concurrency limit."))
    assert not any(quiet.filter(record("Exceeded concurrency limit.")) for _ in range(500))
    assert quiet.filter(record("Invalid HTTP request received."))  # its own allowance
    assert quiet.filter(record("Application startup complete."))  # other messages untouched
    quiet._last["Exceeded concurrency limit."] -= 61  # a minute later
    later = record("Exceeded concurrency limit.")
    assert quiet.filter(later)
    assert later.getMessage() == "Exceeded concurrency limit. (and 500 more in the last minute)"
