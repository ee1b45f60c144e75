"""Rate limits, injected faults and request statistics of the emulator."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from orchestration.core.pacing import TokenBucket

FAULT_KINDS = ("429", "500", "reset", "timeout")


@dataclass
class Limits:
    """Per-mode rate limits and a seeded fault schedule, changeable at runtime."""

    seed: int = 0
    rate_test: float | None = None
    rate_live: float | None = None
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    timeout_seconds: float = 2.0
    buckets: dict[tuple[str, bool], TokenBucket] = field(default_factory=dict)
    rng: random.Random = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed * 7919 + 17)  # noqa: S311 - reproducible, not secret

    def allow(self, account_id: str, livemode: bool) -> bool:
        """Takes a token from the key's (account, mode) bucket, if a limit is set."""
        rate = self.rate_live if livemode else self.rate_test
        if not rate:
            return True
        bucket = self.buckets.get((account_id, livemode))
        if bucket is None or bucket.rate != rate:
            # Stripe's limiter: a one-second burst, and a request over the limit is refused
            # (429), never queued. A changed limit starts from a full bucket.
            bucket = self.buckets[(account_id, livemode)] = TokenBucket(rate, capacity=rate)
        return bucket.try_take()

    def draw_fault(self) -> str | None:
        """The fault to inject into this request, if any (reproducible by seed)."""
        if self.fault_rate <= 0:
            return None
        with self.lock:
            if self.rng.random() >= self.fault_rate:
                return None
            return self.rng.choice(self.fault_kinds)


@dataclass
class Stats:
    """Counters behind GET /_emulator/stats."""

    requests: int = 0
    rate_limited: int = 0
    by_route: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    webhooks_delivered: int = 0
    webhooks_failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, route: str, status: int) -> None:
        """Counts one answered request."""
        with self.lock:
            self.requests += 1
            self.by_route[route] += 1
            self.by_status[str(status)] += 1
            if status == 429:
                self.rate_limited += 1

    def fault(self, kind: str) -> None:
        """Counts one injected fault."""
        with self.lock:
            self.faults[kind] += 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot."""
        with self.lock:
            return {
                "requests": self.requests,
                "rate_limited": self.rate_limited,
                "by_route": dict(self.by_route),
                "by_status": dict(self.by_status),
                "faults": dict(self.faults),
                "webhooks_delivered": self.webhooks_delivered,
                "webhooks_failed": self.webhooks_failed,
            }
