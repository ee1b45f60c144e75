"""The one token bucket: a server refuses when it is empty, a client waits its turn on credit."""

from __future__ import annotations

import time
from itertools import pairwise

from orchestration.core.pacing import TokenBucket


def test_a_full_bucket_lets_its_capacity_through_then_refuses() -> None:
    bucket = TokenBucket(rate=1.0, capacity=5)
    assert [bucket.try_take() for _ in range(6)] == [True] * 5 + [False]


def test_a_refused_take_takes_nothing() -> None:
    bucket = TokenBucket(rate=20.0, capacity=1)
    assert bucket.try_take()
    assert not bucket.try_take()
    time.sleep(0.06)  # one token earned; the refusal above did not spend it in advance
    assert bucket.try_take()


def test_reserve_queues_callers_one_interval_apart() -> None:
    bucket = TokenBucket(rate=10.0, capacity=3, tokens=1)
    waits = [bucket.reserve() for _ in range(4)]
    assert waits[0] == 0.0
    # Each later caller waits a tenth of a second more than the one before (less the moments
    # between the calls, which earn tokens too).
    for before, after in pairwise(waits):
        assert 0.05 < after - before <= 0.1 + 1e-9
    assert bucket.backlog > 0.2


def test_backlog_is_zero_while_a_token_is_there() -> None:
    bucket = TokenBucket(rate=10.0, capacity=3)
    assert bucket.backlog == 0.0
