"""Many writers of the same objects at once (the sync's replay and webhook workers) while Stripe
changes them many times within one second: every round ends with Stripe's state."""

from __future__ import annotations

import random
import time

import pytest

from orchestration.extract import events, sync_stripe
from tests.chaos.conftest import FULL
from tests.extract.races import race_same_second_events
from tests.extract.stripe_proxy import StripeProxy
from tests.extract.test_concurrent_writers import ANSWER_DELAYS

ROUNDS = 100 if FULL else 10
WRITERS = 16 if FULL else 6
OBJECTS = 4 if FULL else 3
CHANGES = 10 if FULL else 4  # per object and round, all in one second


@pytest.mark.parametrize("reread_delay", [0.0, events.REREAD_DELAY], ids=["no-delay", "default"])
def test_many_writers_of_same_second_events_end_with_stripes_state(
    emulator_factory, database_url: str, monkeypatch: pytest.MonkeyPatch, reread_delay: float
) -> None:
    """The large variant of tests/extract's round: WRITERS writers, OBJECTS customers, CHANGES
    changes each per round; Date lagging 0 or 1 s, answers returned late at random. Once with
    the re-read delay cut to nothing (the locks alone), once with the product's delay."""
    monkeypatch.setattr(events, "REREAD_DELAY", reread_delay)
    rng = random.Random(63)  # noqa: S311 - reproducible, not secret
    emu = emulator_factory(customers=50, seed=63, now=int(time.time()))
    rounds = ROUNDS if reread_delay == 0 else max(1, ROUNDS // 10)
    with StripeProxy(emu, lag=lambda: rng.choice([0, 1])).running() as proxy:
        proxy.hook = lambda _path: time.sleep(rng.choice(ANSWER_DELAYS))
        sync_stripe(database_url, emu.test_key, api_base=proxy.url, max_rps=1000)
        stale = {}
        for round_ in range(rounds):
            wrong = race_same_second_events(
                emu,
                database_url,
                proxy.url,
                rng,
                writers=WRITERS,
                objects=OBJECTS,
                changes=CHANGES,
            )
            if wrong:
                stale[round_] = wrong
    assert not stale, f"{len(stale)} of {rounds} rounds left an older state: {stale}"
