"""Webhook fixtures: the real app on a real Postgres database, events signed with Stripe's scheme
by the SDK's own helper, and a real uvicorn server when a test needs a socket."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import stripe
import uvicorn
from starlette.testclient import TestClient

from orchestration.extract.client import API_VERSION, StripeApi
from orchestration.webhooks.server import WEBHOOK_PATH, create_app, server_config

ENDPOINT_WHSEC = "whsec_test_webhooks_primary_0123456789"
PREVIOUS_WHSEC = "whsec_test_webhooks_previous_9876543210"
# Nothing listens on port 9: an event that needed a re-fetch would fail loudly, not pass silently.
UNREACHABLE_API = "http://127.0.0.1:9"


_CREATED = itertools.count(1_800_000_000, 10)


def customer_event(
    event_id: str,
    customer_id: str = "cus_webhook1",
    *,
    created: int | None = None,
    name: str = "Ada Lovelace",
    event_type: str = "customer.updated",
    livemode: bool = False,
    api_version: str = API_VERSION,
) -> dict[str, Any]:
    """A Stripe event whose object is in our pinned API version (so applied without re-fetch).
    Each call is ten seconds after the previous one unless `created` says otherwise: two events
    of one object in the same second are ambiguous, and the extractor re-reads the object."""
    created = next(_CREATED) if created is None else created
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {
            "object": {
                "id": customer_id,
                "object": "customer",
                "created": 1_700_000_000,
                "email": "ada@example.com",
                "name": name,
                "livemode": livemode,
                "delinquent": False,
                "metadata": {},
            }
        },
    }


def signed(
    event: dict[str, Any] | bytes, whsec: str = ENDPOINT_WHSEC, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and headers as Stripe sends them, signed by the SDK's own helper."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), whsec, timestamp=timestamp
    )
    return body, {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": header,
    }


@pytest.fixture
def stripe_api() -> StripeApi:
    return StripeApi("sk_test_webhooks0000", UNREACHABLE_API)


@pytest.fixture
def app_factory(database_url: str, stripe_api: StripeApi) -> Iterator[Callable[..., TestClient]]:
    """Starts the app (lifespan included) on the test database; closed after the test."""
    clients: list[TestClient] = []

    def make(secrets: list[str] | None = None, url: str | None = None, **options: Any):
        app = create_app(url or database_url, secrets or [ENDPOINT_WHSEC], stripe_api, **options)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def http(app_factory: Callable[..., TestClient]) -> TestClient:
    return app_factory()


def post(http: TestClient | httpx.Client, event: dict[str, Any] | bytes, **kw: Any) -> Any:
    body, headers = signed(event, **kw)
    return http.post(WEBHOOK_PATH, content=body, headers=headers)


def flush_rejections(http: TestClient) -> None:
    """Writes the app's counted refusals now (it does so once a minute, and when it stops)."""
    http.app.state.receiver.flush_rejections()  # type: ignore[attr-defined]


def rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


class RunningServer:
    """uvicorn serving an app on a free loopback port, in a thread, with the configuration
    `webhooks serve` uses (`options` override its limits). The port is bound first, so its URL
    can be registered before the app (which needs the secret) exists."""

    def __init__(self, app: Any = None, **options: Any) -> None:
        self.options = options
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook_url = self.url + WEBHOOK_PATH
        self.app = app
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, app: Any = None) -> RunningServer:
        config = server_config(app or self.app, log_level="warning", lifespan="on", **self.options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __enter__(self) -> RunningServer:
        return self.start() if self.app is not None else self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
        self.sock.close()
