"""Every delivery that is not a verified Stripe event is refused, writes nothing but a log row,
and that row holds neither the payload nor a secret."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from orchestration.webhooks.server import HEALTH_PATH, MAX_BODY_BYTES, WEBHOOK_PATH
from tests.webhooks.conftest import (
    ENDPOINT_WHSEC,
    PREVIOUS_WHSEC,
    customer_event,
    flush_rejections,
    post,
    rows,
    signed,
)


def _nothing_applied(database_url: str) -> None:
    assert rows(database_url, "select count(*) from stripe_raw.events") == [(0,)]
    assert rows(database_url, "select count(*) from stripe_raw.customers") == [(0,)]


def _rejections(http, database_url: str) -> list[tuple]:
    flush_rejections(http)
    return rows(
        database_url,
        "select event_id, event_type, outcome, reason from stripe_raw.webhook_deliveries",
    )


def test_correctly_signed_event_is_applied(http, database_url):
    response = post(http, customer_event("evt_ok1"))
    assert response.status_code == 200
    assert response.json() == {"received": True, "id": "evt_ok1", "outcome": "applied"}
    assert rows(database_url, "select id, type from stripe_raw.events") == [
        ("evt_ok1", "customer.updated")
    ]
    assert rows(database_url, "select id, data ->> 'name' from stripe_raw.customers") == [
        ("cus_webhook1", "Ada Lovelace")
    ]
    assert _rejections(http, database_url) == [("evt_ok1", "customer.updated", "applied", None)]


def test_tampered_body_is_rejected(http, database_url):
    body, headers = signed(customer_event("evt_tampered"))
    tampered = body.replace(b"Ada Lovelace", b"Eve Intruder")
    response = http.post(WEBHOOK_PATH, content=tampered, headers=headers)
    assert response.status_code == 400
    _nothing_applied(database_url)
    assert _rejections(http, database_url) == [
        (None, None, "rejected", "signature does not match any webhook secret")
    ]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Stripe-Signature header"),
        ("", "missing Stripe-Signature header"),
        ("garbage", "malformed Stripe-Signature header"),
        ("t={now},v0=abc", "no v1 signature in the Stripe-Signature header"),
        ("t={now},v1=00ff", "malformed Stripe-Signature header"),
        ("t=soon,v1=" + "0" * 64, "malformed Stripe-Signature header"),
        ("t=1,t=2,v1=" + "0" * 64, "malformed Stripe-Signature header"),
        (
            "t={stale},v1=" + "0" * 64,
            "stale timestamp (signed more than 300 s ago)",
        ),
        ("t={now},v1=" + "0" * 64, "signature does not match any webhook secret"),
    ],
    ids=[
        "missing",
        "empty",
        "malformed",
        "no-v1",
        "short-v1",
        "bad-timestamp",
        "two-timestamps",
        "stale-unsigned",
        "wrong-v1",
    ],
)
def test_bad_signature_header_is_rejected(http, database_url, header, reason):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        # Timestamps are taken when the test runs: collection may be minutes earlier.
        now = int(time.time())
        headers["Stripe-Signature"] = header.replace("{now}", str(now)).replace(
            "{stale}", str(now - 301)
        )
    body = json.dumps(customer_event("evt_badsig")).encode()
    response = http.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": reason}
    _nothing_applied(database_url)
    assert _rejections(http, database_url) == [(None, None, "rejected", reason)]


def test_event_signed_with_another_secret_is_rejected(http, database_url):
    response = post(http, customer_event("evt_other"), whsec="whsec_someone_else_0000")
    assert response.status_code == 400
    _nothing_applied(database_url)


def test_stale_timestamp_is_rejected(http, database_url):
    response = post(http, customer_event("evt_stale"), timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    assert response.json() == {"error": "stale timestamp (signed more than 300 s ago)"}
    _nothing_applied(database_url)


def test_timestamp_within_tolerance_is_accepted(http, database_url):
    response = post(http, customer_event("evt_recent"), timestamp=int(time.time()) - 280)
    assert response.status_code == 200


def test_any_of_several_secrets_is_accepted_during_rotation(app_factory, database_url):
    http = app_factory(secrets=[ENDPOINT_WHSEC, PREVIOUS_WHSEC])
    assert post(http, customer_event("evt_new"), whsec=ENDPOINT_WHSEC).status_code == 200
    assert post(http, customer_event("evt_old"), whsec=PREVIOUS_WHSEC).status_code == 200
    assert post(http, customer_event("evt_x"), whsec="whsec_unknown_1111").status_code == 400
    assert rows(database_url, "select id from stripe_raw.events order by id") == [
        ("evt_new",),
        ("evt_old",),
    ]


def test_header_with_several_v1_signatures_is_accepted(http, database_url):
    # During a rotation Stripe signs with the old and the new secret: two v1 entries.
    body = json.dumps(customer_event("evt_two_sigs")).encode()
    now = int(time.time())
    old = stripe.WebhookSignature.generate_signature_header(body.decode(), PREVIOUS_WHSEC, now)
    new = stripe.WebhookSignature.generate_signature_header(body.decode(), ENDPOINT_WHSEC, now)
    header = f"{old},v1={new.split('v1=')[1]}"
    headers = {"Content-Type": "application/json", "Stripe-Signature": header}
    assert http.post(WEBHOOK_PATH, content=body, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", None],
    ids=["text", "form", "none"],
)
def test_wrong_content_type_is_refused(http, database_url, content_type):
    body, headers = signed(customer_event("evt_ctype"))
    headers.pop("Content-Type")
    if content_type:
        headers["Content-Type"] = content_type
    response = http.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 415
    _nothing_applied(database_url)
    assert _rejections(http, database_url) == [
        (None, None, "rejected", "content type is not application/json")
    ]


def _oversized_event() -> dict:
    event = customer_event("evt_big")
    event["data"]["object"]["metadata"] = {"padding": "x" * MAX_BODY_BYTES}
    return event


def test_oversized_body_is_refused_by_content_length(http, database_url):
    response = post(http, _oversized_event())
    assert response.status_code == 413
    _nothing_applied(database_url)
    assert _rejections(http, database_url) == [
        (None, None, "rejected", f"body larger than {MAX_BODY_BYTES} bytes")
    ]


def test_oversized_body_is_refused_while_streaming(http, database_url):
    # Chunked transfer: no Content-Length, so only the streamed size can tell.
    body, headers = signed(_oversized_event())

    def chunks():
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = http.post(WEBHOOK_PATH, content=chunks(), headers=headers)
    assert response.status_code == 413
    _nothing_applied(database_url)


def test_body_at_the_limit_is_accepted(http, database_url):
    event = customer_event("evt_limit")
    size = len(json.dumps(event).encode())
    event["data"]["object"]["metadata"] = {"p": ""}
    pad = MAX_BODY_BYTES - len(json.dumps(event).encode())
    event["data"]["object"]["metadata"] = {"p": "x" * pad}
    assert len(json.dumps(event).encode()) == MAX_BODY_BYTES > size
    assert post(http, event).status_code == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON"),
        (b"[1, 2]", "body is not a Stripe event"),
        (b'{"object": "customer", "id": "cus_1"}', "body is not a Stripe event"),
        (
            b'{"object": "event", "id": "evt_1", "type": "x", "data": []}',
            "body is not a Stripe event",
        ),
    ],
    ids=["not-json", "list", "not-event", "no-object"],
)
def test_signed_body_that_is_not_an_event_is_rejected(http, database_url, body, reason):
    response = post(http, body)
    assert response.status_code == 400
    assert response.json() == {"error": reason}
    _nothing_applied(database_url)


def test_event_of_the_other_mode_is_rejected(http, database_url):
    response = post(http, customer_event("evt_live", livemode=True))
    assert response.status_code == 400
    assert response.json() == {"error": "event is not in the API key's mode (test)"}
    _nothing_applied(database_url)


def test_rejected_rows_hold_no_payload_or_secret(app_factory, database_url):
    http = app_factory(secrets=[ENDPOINT_WHSEC, PREVIOUS_WHSEC])
    event = customer_event("evt_secretive", name="Very Private Person")
    post(http, event, whsec="whsec_attacker_guess_123")
    post(http, event, timestamp=int(time.time()) - 1000)
    body, headers = signed(event)
    http.post(WEBHOOK_PATH, content=body, headers={**headers, "Content-Type": "text/plain"})
    flush_rejections(http)
    dump = json.dumps(
        rows(database_url, "select * from stripe_raw.webhook_deliveries"), default=str
    )
    assert dump.count("rejected") == 3
    for needle in ("Very Private", "evt_secretive", "whsec_", "cus_webhook1", "v1="):
        assert needle not in dump


def test_only_post_is_allowed(http):
    assert http.get(WEBHOOK_PATH).status_code == 405


def test_healthz_reports_the_database(http):
    response = http.get(HEALTH_PATH)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
