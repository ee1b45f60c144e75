"""`stripe-sync webhooks serve`: receives Stripe webhooks, verifies them, and applies each event
through the same code path as the incremental sync before answering 2xx.

Stripe retries every delivery that is not answered 2xx (for up to three days), so the rule is:
answer 2xx only once the event is committed; 5xx when it could not be (Stripe's retry lands it
later, exactly once); 4xx for what no retry can fix. Concurrent deliveries are grouped into one
transaction per batch (group commit), which is what sustains hundreds of events per second.

The endpoint is on the internet, so it spends little on what cannot be Stripe: the signature
header's form and timestamp are checked before a byte of the body is read; unverified bodies are
read within a deadline and a global byte budget; uvicorn runs with a connection limit and a
deadline for request headers; refusals are counted in memory and logged as one summary row per
reason and minute, off the writers' connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import anyio.to_thread
import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from orchestration.core.errors import SettingsError
from orchestration.core.settings import Settings
from orchestration.embedded.environment import check_database, warehouse_url
from orchestration.extract.client import StripeApi, sanitize
from orchestration.webhooks.store import (
    PERMANENT,
    UNAVAILABLE,
    Outcome,
    describe_error,
    ensure_webhook_tables,
    log_rejections,
    open_pool,
    record_failure,
    store_events,
)
from orchestration.webhooks.verify import (
    Rejected,
    check_signature_header,
    parse_event,
    verify_signature,
)

log = logging.getLogger("stripe_sync.webhooks")

WEBHOOK_PATH = "/stripe/webhook"
HEALTH_PATH = "/healthz"
MAX_BODY_BYTES = 1024 * 1024  # Stripe's events are far below this; anything larger is not one
WRITERS = 4  # concurrent batches (connections) storing events
MAX_BATCH = 200  # deliveries per transaction
# Limits of the hardened endpoint. Stripe sends a few KB per event, from a fast network, and
# retries anything answered 5xx or not answered: a refused delivery is late, never lost.
BODY_TIMEOUT_SECONDS = 5.0  # a whole body within this, or 408 and the connection closed
HEADER_TIMEOUT_SECONDS = 5.0  # request line and headers within this of connecting
BODY_BUDGET_BYTES = 32 * 1024 * 1024  # unverified bodies held at once, all requests together
# Open connections; uvicorn answers 503 past it (a delivery too: Stripe retries it). A connection
# costs ~100 KB at most (headers capped, bodies either refused unread or within the budget).
LIMIT_CONCURRENCY = 400
MAX_HEADER_BYTES = 16 * 1024  # request line and headers; h11 answers 400 past it
REJECTION_FLUSH_SECONDS = 60.0  # one summary row per rejection reason per interval


class Receiver:
    """Verified events → batches → one transaction each, on a few writer tasks."""

    def __init__(
        self, database_url: str, client: StripeApi, *, writers: int, max_batch: int
    ) -> None:
        self.client = client
        self.writers = writers
        self.max_batch = max_batch
        self.database_url = database_url
        # One more connection than writers: /healthz never waits behind batches.
        self.pool = open_pool(database_url, size=writers + 1)
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[Outcome]]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._rejected: Counter[str] = Counter()  # refusals since the last summary row
        self._rejected_lock = threading.Lock()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._writer()) for _ in range(self.writers)]
        self._tasks.append(asyncio.create_task(self._flush_rejections_periodically()))
        try:
            await anyio.to_thread.run_sync(self._ensure_schema)
        except psycopg.Error as exc:
            # Start anyway: deliveries answer 503 until the database is back, then it is created.
            log.warning("database not ready at start (%s); will retry", _describe(exc))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await anyio.to_thread.run_sync(self.flush_rejections)
        self.pool.close()

    def count_rejection(self, reason: str) -> None:
        """Counts a refused delivery; the first of its reason since the last summary is logged."""
        with self._rejected_lock:
            first = reason not in self._rejected
            self._rejected[reason] += 1
        if first:
            log.info("rejected a webhook delivery: %s", reason)

    def flush_rejections(self) -> None:
        """Writes the counted refusals as one row per reason (best effort: when the database is
        unreachable they are kept for the next flush, the table is only a log)."""
        with self._rejected_lock:
            counts, self._rejected = self._rejected, Counter()
        if not counts:
            return
        try:
            log_rejections(self.database_url, counts)
        except psycopg.Error as exc:
            log.warning("could not log rejected webhook deliveries: %s", type(exc).__name__)
            with self._rejected_lock:
                self._rejected.update(counts)
            return
        summary = ", ".join(f"{reason} ({n})" for reason, n in sorted(counts.items()))
        log.info("rejected %d webhook deliveries: %s", sum(counts.values()), summary)

    async def _flush_rejections_periodically(self) -> None:
        while True:
            await asyncio.sleep(REJECTION_FLUSH_SECONDS)
            await anyio.to_thread.run_sync(self.flush_rejections)

    async def submit(self, event: dict[str, Any]) -> Outcome:
        """Returns once the event is committed (or raises why it could not be)."""
        assert self._queue is not None, "the app's lifespan has not started"  # noqa: S101
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        await self._queue.put((event, future))
        return await future

    async def _writer(self) -> None:
        assert self._queue is not None  # noqa: S101
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            events = [event for event, _ in batch]
            try:
                results = await anyio.to_thread.run_sync(self.store_batch, events)
            except Exception as exc:  # the whole batch failed
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _ensure_schema(self) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            with self.pool.connection() as conn:
                ensure_webhook_tables(conn)
            self._schema_ready = True

    def store_batch(self, events: list[dict[str, Any]]) -> list[Outcome | Exception]:
        """Stores a batch in one transaction; one result per event, in order. Only Stripe or the
        database being unavailable fails the batch (raised: each event would fail alike, and
        slowly). Any other error makes each event be tried alone, so one bad event never fails
        its neighbours; an event that fails alone is recorded as failed (see _store_alone)."""
        self._ensure_schema()
        try:
            with self.pool.connection() as conn:
                return list(store_events(conn, self.client, events))
        except UNAVAILABLE:
            raise
        except Exception as exc:
            if len(events) == 1:
                return [self._record_failure(events[0], exc)]
        return [self._store_alone(event) for event in events]

    def _store_alone(self, event: dict[str, Any]) -> Outcome | Exception:
        try:
            with self.pool.connection() as conn:
                [outcome] = store_events(conn, self.client, [event])
                return outcome
        except UNAVAILABLE as exc:
            return exc  # this event only: answered 5xx, Stripe redelivers it
        except Exception as exc:
            return self._record_failure(event, exc)

    def _record_failure(self, event: dict[str, Any], exc: Exception) -> Outcome | Exception:
        """Records a verified event that could not be applied (the delivery log: `status`, the
        Dagster UI). A permanent error of its own (a 403 or 400 on its re-fetch, an object
        Postgres refuses) is acknowledged 2xx: Stripe's retries (three days of them) cannot fix
        it and would only keep it in every batch; the events API still holds it, so the next
        incremental sync meets it again, and a manual resend after the fix applies it (a failed
        event is not stored). An unexpected error is returned, answered 5xx: Stripe redelivers
        it, and a receiver with the fix applies it."""
        permanent = isinstance(exc, PERMANENT)
        log.warning(
            "webhook event %s failed%s: %s",
            event["id"],
            "" if permanent else " (unexpected, answered 5xx)",
            describe_error(exc),
        )
        try:
            with self.pool.connection() as conn:
                outcome = record_failure(conn, event, exc)
        except psycopg.Error as db_exc:
            return db_exc  # not even recorded: 5xx, so Stripe redelivers it
        return outcome if permanent else exc

    def database_ok(self) -> bool:
        try:
            with self.pool.connection() as conn:
                conn.execute("select 1")
            return True
        except psycopg.Error:
            return False


def _describe(exc: BaseException) -> str:
    """A loggable one-liner: the exception type and its first line, keys and secrets removed."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return sanitize(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def _content_type_is_json(value: str | None) -> bool:
    return (value or "").split(";")[0].strip().lower() == "application/json"


class BodyBudget:
    """Bytes of not-yet-verified bodies held by all requests together. Past the limit a request
    is refused (503, Stripe retries) instead of buffered: memory stays bounded whatever the number
    of senders. Used from the event loop's thread only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    @contextlib.contextmanager
    def reserve(self) -> Iterator[list[int]]:
        """A holder whose one item counts what the request took; given back on exit."""
        taken = [0]
        try:
            yield taken
        finally:
            self.held -= taken[0]

    def take(self, taken: list[int], size: int) -> None:
        if self.held + size > self.limit:
            raise Rejected(503, "too many request bodies in flight, retry")
        self.held += size
        taken[0] += size


async def _read_body(
    request: Request, budget: BodyBudget, taken: list[int], timeout: float
) -> bytes:
    """The body, refused (413) past MAX_BODY_BYTES: first by Content-Length, then while streaming
    (a chunked body has no Content-Length, and a sender may lie about it); refused (408) when it
    does not arrive whole within `timeout` seconds, so a slow sender holds nothing for long."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Rejected(400, "invalid Content-Length")
        if int(declared) > MAX_BODY_BYTES:
            raise Rejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise Rejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
                budget.take(taken, len(chunk))
                chunks.append(chunk)
    except TimeoutError:
        raise Rejected(408, f"body not received within {timeout:g} s") from None
    except ClientDisconnect:
        raise Rejected(400, "client disconnected before the end of its body") from None
    return b"".join(chunks)


WEBHOOK_REFETCH_ATTEMPTS = 3


def create_app(
    database_url: str,
    secrets: Sequence[str],
    client: StripeApi,
    *,
    writers: int = WRITERS,
    max_batch: int = MAX_BATCH,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    body_budget: int = BODY_BUDGET_BYTES,
) -> Starlette:
    """The webhook endpoint (POST /stripe/webhook) and a health probe (GET /healthz).
    `secrets`: every accepted signing secret; `client` re-fetches objects rendered in another API
    version than ours (and is the key whose mode the events must have)."""
    accepted = [s for s in secrets if s]
    if not accepted:
        raise ValueError("at least one webhook signing secret is required")
    receiver = Receiver(database_url, client, writers=writers, max_batch=max_batch)
    budget = BodyBudget(body_budget)

    def reject(rejection: Rejected) -> JSONResponse:
        receiver.count_rejection(rejection.reason)
        # Closed after the answer: the rest of an unread body is never read, and a sender of
        # garbage gets no keep-alive connection to send more on.
        return JSONResponse(
            {"error": rejection.reason},
            status_code=rejection.status,
            headers={"Connection": "close"},
        )

    async def receive(request: Request) -> JSONResponse:
        try:
            if not _content_type_is_json(request.headers.get("content-type")):
                raise Rejected(415, "content type is not application/json")
            header = request.headers.get("stripe-signature")
            check_signature_header(header)  # before the body: no buffering for what is not Stripe
            with budget.reserve() as taken:
                body = await _read_body(request, budget, taken, body_timeout)
                verify_signature(body, header, accepted)
            event = parse_event(body)
            if bool(event.get("livemode")) != client.livemode:
                mode = "live" if client.livemode else "test"
                raise Rejected(400, f"event is not in the API key's mode ({mode})")
        except Rejected as rejection:
            return reject(rejection)
        try:
            outcome = await receiver.submit(event)
        except UNAVAILABLE as exc:
            # Database down or Stripe unreachable for a re-fetch: nothing committed; Stripe
            # retries, and the retry is applied exactly once.
            log.warning("webhook event %s not stored: %s", event["id"], _describe(exc))
            return JSONResponse({"error": "temporarily unavailable, retry"}, status_code=503)
        except Exception as exc:
            log.exception("webhook event %s not stored: %s", event["id"], _describe(exc))
            return JSONResponse({"error": "internal error, retry"}, status_code=500)
        if outcome.outcome == "failed":
            # 2xx on purpose: see Receiver._record_failure. The reason is ours, secrets removed.
            return JSONResponse(
                {"received": True, "id": event["id"], "outcome": "failed", "error": outcome.reason}
            )
        return JSONResponse({"received": True, "id": event["id"], "outcome": outcome.outcome})

    async def healthz(request: Request) -> JSONResponse:
        ok = await anyio.to_thread.run_sync(receiver.database_ok)
        body = {"status": "ok" if ok else "database unavailable"}
        return JSONResponse(body, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await receiver.start()
        try:
            yield
        finally:
            await receiver.stop()

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, receive, methods=["POST"]),
            Route(HEALTH_PATH, healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.receiver = receiver
    return app


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request line and headers are not
    complete `HEADER_TIMEOUT_SECONDS` after it opened (or after its previous response). uvicorn's
    keep-alive timer restarts on every byte, so one byte every few seconds would hold a
    connection forever. h11 rather than httptools: it caps the bytes of incomplete headers."""

    header_timeout = HEADER_TIMEOUT_SECONDS

    # The signature of uvicorn's H11Protocol.connection_made, which narrows asyncio's own.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        waiting_after = self.cycle  # None before the first request

        def expire() -> None:
            in_progress = self.cycle is not None and not self.cycle.response_complete
            if self.cycle is waiting_after and not in_progress and not self.transport.is_closing():
                self.transport.close()

        self._header_deadline = self.loop.call_later(self.header_timeout, expire)


class _OncePerMinute(logging.Filter):
    """Lets uvicorn's per-request warnings about abusive traffic (over the connection limit,
    unparsable requests) through once a minute with the number held back, so a flood cannot
    flood the log too."""

    MESSAGES = ("Exceeded concurrency limit.", "Invalid HTTP request received.")

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message not in self.MESSAGES:
            return True
        now = time.monotonic()
        if now - self._last.get(message, -REJECTION_FLUSH_SECONDS) < REJECTION_FLUSH_SECONDS:
            self._held[message] += 1
            return False
        self._last[message] = now
        if held := self._held.pop(message, 0):
            record.msg, record.args = "%s (and %d more in the last minute)", (message, held)
        return True


def _quiet_uvicorn_warnings() -> None:
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _OncePerMinute) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(_OncePerMinute())


def server_config(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    limit_concurrency: int = LIMIT_CONCURRENCY,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
    **options: Any,
) -> uvicorn.Config:
    """uvicorn's configuration for the endpoint: connection limit, header deadline, bounded
    headers, short keep-alive. `serve`, the tests and the benchmarks all run this one."""
    protocol = type(
        "WebhookProtocol", (HeaderDeadlineProtocol,), {"header_timeout": header_timeout}
    )
    options.setdefault("log_level", "info")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        access_log=False,
        **options,
    )
    _quiet_uvicorn_warnings()  # after the Config, which (re)configures uvicorn's loggers
    return config


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    alongside: Callable[[str], AbstractContextManager[object]] | None = None,
) -> None:
    """Runs the endpoint with uvicorn until interrupted, within `alongside(warehouse URL)` once
    the settings and the warehouse are checked (the CLI runs the resident builder there)."""
    secrets = settings.webhook_secrets
    if not secrets:
        raise SettingsError(
            "STRIPE_WEBHOOK_SECRET is not set, so no delivery could be verified",
            "run `stripe-sync webhooks register URL` and put the secret it prints in .env as"
            " STRIPE_WEBHOOK_SECRET",
        )
    api_key = settings.require_api_key(
        "export the secret or restricted key of the account the endpoint belongs to: the"
        " webhook receiver re-reads objects with it"
    )
    url = warehouse_url(settings)
    check_database(url)
    # Few retries: Stripe redelivers a webhook we answer 5xx, so a writer should not wait minutes
    # on a re-fetch while Stripe is down.
    client = StripeApi(
        api_key,
        settings.stripe_api_base,
        max_rps=settings.stripe_max_rps,
        max_attempts=WEBHOOK_REFETCH_ATTEMPTS,
        api_version=settings.stripe_api_version,
    )
    app = create_app(url, secrets, client)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info(
        "receiving Stripe webhooks on http://%s:%d%s (%d signing secret%s, key %s)",
        host,
        port,
        WEBHOOK_PATH,
        len(secrets),
        "" if len(secrets) == 1 else "s",
        settings.masked_key,
    )
    with alongside(url) if alongside is not None else contextlib.nullcontext():
        uvicorn.Server(server_config(app, host=host, port=port)).run()
