"""Webhook endpoints: created with a whsec_ secret, events POSTed signed like Stripe's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import stripe

from orchestration.emulator import Emulator
from tests.emulator.conftest import sdk


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[bytes, str]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((body, self.headers["Stripe-Signature"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    """A local HTTP server recording webhook posts."""
    received: list[tuple[bytes, str]] = []
    handler = type("Handler", (_Receiver,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_create_returns_secret_once(emulator: Emulator) -> None:
    client = sdk(emulator)
    endpoint = client.v1.webhook_endpoints.create(
        {"url": "https://example.com/hook", "enabled_events": ["customer.created"]}
    )
    assert endpoint.secret.startswith("whsec_")
    again = client.v1.webhook_endpoints.retrieve(endpoint.id)
    assert "secret" not in again
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [endpoint.id]


def test_missing_url_is_rejected(emulator: Emulator) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        sdk(emulator).v1.webhook_endpoints.create({"enabled_events": ["*"]})
    assert err.value.param == "url"


def test_deliveries_verify_and_tampering_fails(emulator: Emulator, receiver) -> None:
    url, received = receiver
    endpoint = sdk(emulator).v1.webhook_endpoints.create({"url": url, "enabled_events": ["*"]})
    test_events = emulator.objects("events")
    new = [e for e in emulator.tick(10) if e in emulator.objects("events") and e not in test_events]
    emulator.flush_webhooks()
    assert len(received) == len(new)
    ids = []
    for body, header in received:
        event = stripe.Webhook.construct_event(body, header, endpoint.secret)
        ids.append(event.id)
    assert ids == new
    body, header = received[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.replace(b'"event"', b'"evil"'), header, endpoint.secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, "whsec_wrong")


def test_enabled_events_are_respected(emulator: Emulator, receiver) -> None:
    url, received = receiver
    sdk(emulator).v1.webhook_endpoints.create({"url": url, "enabled_events": ["invoice.paid"]})
    new = emulator.tick(40)
    emulator.flush_webhooks()
    client = sdk(emulator)
    events = emulator.objects("events")
    paid = [e for e in new if e in events and events[e]["type"] == "invoice.paid"]
    assert paid
    assert len(received) == len(paid)
    assert client.v1.events.retrieve(paid[0]).pending_webhooks == 1


def test_live_endpoints_do_not_get_test_events(emulator: Emulator, receiver) -> None:
    url, received = receiver
    sdk(emulator, emulator.live_key).v1.webhook_endpoints.create(
        {"url": url, "enabled_events": ["*"]}
    )
    new = emulator.tick(60)
    emulator.flush_webhooks()
    live_events = [e for e in new if e in emulator.objects("events", livemode=True)]
    assert live_events and len(live_events) < len(new)
    assert len(received) == len(live_events)
    assert all(b'"livemode":true' in body for body, _ in received)
