"""`stripe-sync webhooks serve`: receives Stripe webhooks, verifies them, and applies each event
through the same code path as the incremental sync before answering 2xx.

Stripe retries every delivery that is not answered 2xx (for up to three days), so the rule is:
answer 2xx only once the event is committed; 5xx when it could not be (Stripe's retry lands it
later, exactly once); 4xx for what no retry can fix. Concurrent deliveries are grouped into one
transaction per batch (group commit), which is what sustains hundreds of events per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio.to_thread
import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestration.errors import SettingsError, StripeKeyError, StripeSyncError
from orchestration.extract.client import StripeApi, sanitize
from orchestration.settings import Settings
from orchestration.webhooks.store import (
    ConnectionPool,
    Outcome,
    ensure_webhook_tables,
    log_rejection,
    store_events,
)
from orchestration.webhooks.verify import Rejected, parse_event, verify_signature

log = logging.getLogger("stripe_sync.webhooks")

WEBHOOK_PATH = "/stripe/webhook"
HEALTH_PATH = "/healthz"
MAX_BODY_BYTES = 1024 * 1024  # Stripe's events are far below this; anything larger is not one
WRITERS = 4  # concurrent batches (connections) storing events
MAX_BATCH = 200  # deliveries per transaction


class Receiver:
    """Verified events → batches → one transaction each, on a few writer tasks."""

    def __init__(
        self, database_url: str, client: StripeApi, *, writers: int, max_batch: int
    ) -> None:
        self.client = client
        self.writers = writers
        self.max_batch = max_batch
        # One more connection than writers: rejections and /healthz never wait behind batches.
        self.pool = ConnectionPool(database_url, size=writers + 1)
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[Outcome]]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._writer()) for _ in range(self.writers)]
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
        self.pool.close()

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
                results = await anyio.to_thread.run_sync(self._store_batch, events)
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

    def _store_batch(self, events: list[dict[str, Any]]) -> list[Outcome | Exception]:
        """Stores a batch in one transaction. If it fails because of its data (not because the
        database or Stripe is unreachable, which would fail each event alike, and slowly), each
        event is tried alone, so one bad event never fails its neighbours."""
        self._ensure_schema()
        try:
            with self.pool.connection() as conn:
                return list(store_events(conn, self.client, events))
        except (psycopg.OperationalError, StripeSyncError):
            raise
        except Exception as exc:
            if len(events) == 1:
                return [exc]
        results: list[Outcome | Exception] = []
        for event in events:
            try:
                with self.pool.connection() as conn:
                    results.extend(store_events(conn, self.client, [event]))
            except Exception as exc:
                results.append(exc)
        return results

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


async def _read_body(request: Request) -> bytes:
    """The body, refused (413) past MAX_BODY_BYTES: first by Content-Length, then while streaming
    (a chunked body has no Content-Length, and a sender may lie about it)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Rejected(400, "invalid Content-Length")
        if int(declared) > MAX_BODY_BYTES:
            raise Rejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Rejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


WEBHOOK_REFETCH_ATTEMPTS = 3


def create_app(
    database_url: str,
    secrets: Sequence[str],
    client: StripeApi,
    *,
    writers: int = WRITERS,
    max_batch: int = MAX_BATCH,
) -> Starlette:
    """The webhook endpoint (POST /stripe/webhook) and a health probe (GET /healthz).
    `secrets`: every accepted signing secret; `client` re-fetches objects rendered in another API
    version than ours (and is the key whose mode the events must have)."""
    accepted = [s for s in secrets if s]
    if not accepted:
        raise ValueError("at least one webhook signing secret is required")
    receiver = Receiver(database_url, client, writers=writers, max_batch=max_batch)

    async def reject(rejection: Rejected) -> JSONResponse:
        log.info("rejected a webhook delivery (%d): %s", rejection.status, rejection.reason)
        await anyio.to_thread.run_sync(log_rejection, receiver.pool, rejection.reason)
        return JSONResponse({"error": rejection.reason}, status_code=rejection.status)

    async def receive(request: Request) -> JSONResponse:
        try:
            if not _content_type_is_json(request.headers.get("content-type")):
                raise Rejected(415, "content type is not application/json")
            body = await _read_body(request)
            verify_signature(body, request.headers.get("stripe-signature"), accepted)
            event = parse_event(body)
            if bool(event.get("livemode")) != client.livemode:
                mode = "live" if client.livemode else "test"
                raise Rejected(400, f"event is not in the API key's mode ({mode})")
        except Rejected as rejection:
            return await reject(rejection)
        try:
            outcome = await receiver.submit(event)
        except (psycopg.OperationalError, StripeSyncError) as exc:
            # Database down or Stripe unreachable for a re-fetch: nothing committed; Stripe
            # retries, and the retry is applied exactly once.
            log.warning("webhook event %s not stored: %s", event["id"], _describe(exc))
            return JSONResponse({"error": "temporarily unavailable, retry"}, status_code=503)
        except Exception as exc:
            log.exception("webhook event %s not stored: %s", event["id"], _describe(exc))
            return JSONResponse({"error": "internal error, retry"}, status_code=500)
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


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Runs the endpoint with uvicorn until interrupted."""
    import uvicorn

    from orchestration.environment import check_database, warehouse_url

    secrets = settings.webhook_secrets
    if not secrets:
        raise SettingsError(
            "STRIPE_WEBHOOK_SECRET is not set, so no delivery could be verified",
            "run `stripe-sync webhooks register URL` and put the secret it prints in .env as"
            " STRIPE_WEBHOOK_SECRET",
        )
    if not settings.api_key:
        raise StripeKeyError(
            "STRIPE_API_KEY is not set; the webhook receiver needs it to re-read objects",
            "export the secret or restricted key of the account the endpoint belongs to",
        )
    url = warehouse_url(settings)
    check_database(url)
    # Few retries: Stripe redelivers a webhook we answer 5xx, so a writer should not wait minutes
    # on a re-fetch while Stripe is down.
    client = StripeApi(
        settings.api_key,
        settings.stripe_api_base,
        max_rps=settings.stripe_max_rps,
        max_attempts=WEBHOOK_REFETCH_ATTEMPTS,
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
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
