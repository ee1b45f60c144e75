"""The Stripe client on its own: an API base it cannot reach, and Stripe's clock."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from orchestration.core.errors import StripeUnavailableError
from orchestration.extract.client import UNREACHED_ATTEMPTS, StripeApi
from tests.extract.races import change_customer
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


def _stripe_time_after(emu, lags: Iterator[int]) -> float:
    """Stripe's "now" as a client tells it after reading the events list once per lag (each
    answer's Date header lagging the event clock by that many seconds), the newest event being
    of this very second."""
    customer_id = sorted(emu.objects("customers"))[0]
    change_customer(emu, customer_id, "skew@example.org", other_version=False)
    proxy = StripeProxy(emu, lag=lambda: next(lags, 0))
    with proxy.running():
        client = StripeApi(emu.test_key, proxy.url, max_rps=1000)
        for _ in range(8):
            client.get("/v1/events", limit=1)
        return client.get("/v1/customers", limit=1).server_time.timestamp()


def test_one_jittery_date_header_does_not_put_stripes_clock_ahead(emulator_factory) -> None:
    """Once, Date lags the event clock by 30 s: stamps never run ahead of Stripe's clock."""
    emu = emulator_factory(customers=20, seed=64, now=int(time.time()))
    stamp = _stripe_time_after(emu, iter([0, 0, 0, 30, 0, 0, 0, 0]))
    assert stamp <= emu.now()


def test_a_steady_skew_between_date_and_event_clock_is_learned(emulator_factory) -> None:
    """A test clock runs an hour ahead of the Date header: stamps follow the event clock."""
    emu = emulator_factory(customers=20, seed=65, now=int(time.time()))
    stamp = _stripe_time_after(emu, iter([3600] * 9))
    assert stamp == emu.now()
