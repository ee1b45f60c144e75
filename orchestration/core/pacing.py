"""The one token bucket: the extractor paces its requests with it, the emulator enforces limits."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; thread-safe.

    The bucket is only the arithmetic; the policy is the caller's. A client that must wait takes
    a token on credit with `reserve()` (the balance goes negative) and sleeps for the seconds it
    returns, so threads queue in arrival order; a server that must refuse uses `try_take()`.
    `rate` may be changed while in use; tokens already earned are kept.
    """

    def __init__(self, rate: float, capacity: float, tokens: float | None = None) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity if tokens is None else tokens
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        """Adds the tokens earned since the last call (under the lock)."""
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_take(self) -> bool:
        """Takes a token if one is there now; False (nothing taken) when the bucket is empty."""
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def reserve(self) -> float:
        """Takes a token, on credit if none is left; the seconds until it is really earned."""
        with self._lock:
            self._refill()
            self._tokens -= 1
            return max(0.0, -self._tokens / self.rate)

    def acquire(self) -> None:
        """Takes a token, sleeping until it is earned."""
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)

    @property
    def backlog(self) -> float:
        """Seconds until the next token is earned (0 when one is there now)."""
        with self._lock:
            self._refill()
            return max(0.0, (1 - self._tokens) / self.rate)
