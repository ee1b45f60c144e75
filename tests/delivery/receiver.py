"""A local receiver of segment changes: a threaded http.server on 127.0.0.1 that verifies each
delivery's signature and answers what the test tells it to."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from orchestration.delivery import HEADER, SignatureVerificationError, verify_signature

# Shaped like a Stripe webhook secret on purpose: the suite's secrets audit then also looks for it
# in every test database and in every test's captured output.
SECRET = "whsec_segmentDeliveryTest0123456789"


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got."""

    change_id: int
    attempt: int
    body: dict[str, Any]
    status: int  # what the receiver answered


# (change_id, how many times this change arrived before) → the status to answer
Responder = Callable[[int, int], int]


@dataclass
class Receiver:
    """What the receiver got; `respond` decides each answer (200 unless told otherwise)."""

    secret: str = SECRET
    respond: Responder = lambda change_id, seen: 200
    delay: float = 0.0  # seconds to wait before answering
    deliveries: list[Delivery] = field(default_factory=list)
    unsigned: int = 0  # POSTs whose signature did not verify (answered 401)
    cut: int = 0  # POSTs whose sender died before the whole body arrived (not handled)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, body: bytes, header: str | None, attempt: str | None) -> int:
        try:
            verify_signature(body, header, self.secret)
        except SignatureVerificationError:
            with self._lock:
                self.unsigned += 1
            return 401
        change = json.loads(body)
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            seen = sum(1 for d in self.deliveries if d.change_id == change["change_id"])
            status = self.respond(change["change_id"], seen)
            self.deliveries.append(Delivery(change["change_id"], int(attempt or 0), change, status))
        return status

    def delivered_ids(self) -> list[int]:
        """The change ids answered 2xx, in the order they arrived."""
        return [d.change_id for d in self.deliveries if 200 <= d.status < 300]

    def received_ids(self) -> list[int]:
        """Every change id that arrived, retries included, in order."""
        return [d.change_id for d in self.deliveries]


@contextmanager
def serve(receiver: Receiver, path: str = "/hooks/segments?token=abc123") -> Iterator[Receiver]:
    """Serves `receiver` on a free port of 127.0.0.1 until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            if len(body) < length:
                # The sender was killed between its headers and its body (httpx writes them
                # apart): no receiver would take a truncated body for a delivery.
                with receiver._lock:
                    receiver.cut += 1
                self.close_connection = True
                return
            status = receiver.handle(
                body, self.headers.get(HEADER), self.headers.get("Stripe-Sync-Attempt")
            )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
