"""Signed webhook deliveries to registered endpoints, on a background thread."""

from __future__ import annotations

import hashlib
import hmac
import queue
import threading
import time
from typing import Any

import httpx

from orchestration.emulator.limits import Stats
from orchestration.emulator.store import dumps


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The Stripe-Signature header value: t=…,v1=HMAC-SHA256(secret, "t.payload")."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def matches(endpoint: dict[str, Any], event_type: str) -> bool:
    """Whether an endpoint subscribed to this event type."""
    if endpoint.get("status") != "enabled":
        return False
    return any(e == "*" or e == event_type for e in endpoint["enabled_events"])


class Deliverer:
    """Posts events to endpoints from `workers` threads; flush() waits until the queue is empty.

    One worker delivers in order, one at a time (what tests of ordering rely on). Stripe itself
    delivers concurrently and without an order guarantee, so benches measuring bursts use several
    workers: one worker turns a burst of 1,000 events into 1,000 round trips in a row.
    """

    def __init__(self, stats: Stats, timeout: float = 5.0, workers: int = 1) -> None:
        self.stats = stats
        self.queue: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue()
        self.client = httpx.Client(
            timeout=timeout, limits=httpx.Limits(max_connections=max(workers, 10))
        )
        self.threads = [
            threading.Thread(target=self._run, name=f"emulator-webhooks-{n}", daemon=True)
            for n in range(max(workers, 1))
        ]
        for thread in self.threads:
            thread.start()

    def enqueue(self, url: str, secret: str, event: dict[str, Any]) -> None:
        """Schedules one delivery."""
        self.queue.put((url, secret, dumps(event)))

    def flush(self, timeout: float = 10.0) -> None:
        """Blocks until every queued delivery was attempted (or timeout)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Stops the delivery threads."""
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join(timeout=5)
        self.client.close()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                self._deliver(*item)
            finally:
                self.queue.task_done()

    def _deliver(self, url: str, secret: str, payload: bytes) -> None:
        # Signatures use real time: receivers check the timestamp against their own clock.
        header = sign(payload, secret, int(time.time()))
        try:
            response = self.client.post(
                url,
                content=payload,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": header,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                },
            )
            ok = 200 <= response.status_code < 300
        except httpx.HTTPError:
            ok = False
        with self.stats.lock:
            if ok:
                self.stats.webhooks_delivered += 1
            else:
                self.stats.webhooks_failed += 1
