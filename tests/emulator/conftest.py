"""Shared helpers for emulator tests: a read-only emulator per module and SDK clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from orchestration.emulator import Emulator, start_emulator


def sdk(emu: Emulator, key: str | None = None, **options: object) -> stripe.StripeClient:
    """The real stripe SDK pointed at the emulator."""
    options.setdefault("max_network_retries", 0)
    return stripe.StripeClient(key or emu.test_key, base_addresses={"api": emu.url}, **options)


@pytest.fixture(scope="module")
def shared() -> Iterator[Emulator]:
    """A 120-customer emulator that tests in a module only read (no ticks, no clock moves)."""
    # A fixed clock: these tests compare the API with ground truth taken moments apart.
    with start_emulator(customers=120, seed=7, now=1_790_000_000) as emu:
        yield emu


@pytest.fixture(scope="module")
def client(shared: Emulator) -> stripe.StripeClient:
    """SDK client with the shared emulator's test key."""
    return sdk(shared)
