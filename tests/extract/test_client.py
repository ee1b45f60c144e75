"""The Stripe client on its own: an API base it cannot reach, and Stripe's clock."""

from __future__ import annotations

import socket

import pytest

from orchestration.errors import StripeUnavailableError
from orchestration.extract.client import UNREACHED_ATTEMPTS, StripeApi
from tests.extract.stripe_proxy import StripeProxy


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_api_base_fails_after_a_few_quick_tries() -> None:
    client = StripeApi("sk_test_51" + "x" * 40, f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(StripeUnavailableError, match="STRIPE_API_BASE") as raised:
        client.get("/v1/account")
    assert "connection refused" in raised.value.problem
    assert client.stats.requests == UNREACHED_ATTEMPTS < client.max_attempts


def test_an_api_that_answered_once_is_retried_when_it_goes_away(emulator) -> None:
    """Once the API base has answered, a refused connection is a blip: every retry is made."""
    proxy = StripeProxy(emulator)
    with proxy.running():
        client = StripeApi(emulator.test_key, proxy.url, max_attempts=4)
        client.get("/v1/account")
    with pytest.raises(StripeUnavailableError, match="after 4 attempts"):
        client.get("/v1/account")
    assert client.stats.requests == 1 + 4
